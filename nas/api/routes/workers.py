"""The worker processes known to the queue."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from nas.api.auth import require_admin
from nas.api.deps import StoreDep
from nas.api.schemas import error_responses

router = APIRouter(
    prefix="/v1/workers",
    tags=["workers"],
    dependencies=[Depends(require_admin)],
    responses=error_responses(404, 503),
)


class RunningTrialOut(BaseModel):
    """A trial a worker runs now (``trial_id`` null while its slot is between trials)."""

    search_id: str
    trial_id: str | None


class WorkerOut(BaseModel):
    id: str
    hostname: str
    pid: int
    backend: str
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    #: Trials it runs at once (NAS_PARALLEL_TRIALS).
    slots: int
    #: The devices its trials train on; null until a slot of it looked.
    accelerator: dict[str, Any] | None
    current_trials: list[RunningTrialOut]


@router.get("")
def list_workers(store: StoreDep) -> dict[str, list[WorkerOut]]:
    """Every worker that registered, newest first, with its last heartbeat, its host and
    accelerator, its slots and the trials it runs now (admin only)."""
    return {
        "items": [
            WorkerOut(
                **vars(worker)
                | {
                    "current_trials": [
                        RunningTrialOut(**vars(run)) for run in worker.current_trials
                    ]
                }
            )
            for worker in store.list_workers()
        ]
    }
