"""The worker processes known to the queue."""

from __future__ import annotations

from datetime import datetime

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


class WorkerOut(BaseModel):
    id: str
    hostname: str
    pid: int
    backend: str
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    current_search_id: str | None


@router.get("")
def list_workers(store: StoreDep) -> dict[str, list[WorkerOut]]:
    """Every worker that registered, newest first, with its last heartbeat (admin only)."""
    return {"items": [WorkerOut(**vars(worker)) for worker in store.list_workers()]}
