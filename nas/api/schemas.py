"""Response bodies of the API, built from the store's records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from nas.core.specs import SearchSpec
from nas.core.store import ExportedModel, SearchRecord, TrialRecord


class ErrorOut(BaseModel):
    """An error a client can act on."""

    detail: str


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route may answer with."""
    reasons = {
        401: "Missing, unknown or revoked bearer token",
        403: "The token may not do this",
        404: "No such search (or model)",
        409: "Conflicts with the search's state or an earlier request",
        413: "The request body is too large",
        429: "Too many queued searches, or too many requests",
        503: "The database is unavailable; retry shortly",
    }
    return {code: {"model": ErrorOut, "description": reasons[code]} for code in codes}


class TrialOut(BaseModel):
    """One row of the leaderboard."""

    trial_id: str
    rank: int | None
    status: str
    score: float | None
    hyperparameters: dict[str, Any]
    params: int | None
    epochs: int
    seconds: float
    history: list[dict[str, float]]
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    test_accuracy: float | None = None
    stop_reason: str | None = None
    #: The epochs its architecture trained again from scratch on the training and validation
    #: photos: ``test_accuracy`` is that model's. None when its own model was exported.
    final_epochs: int | None = None
    #: Where it ran (last): the worker, its host and the devices it trained on.
    worker_id: str | None = None
    hostname: str | None = None
    accelerator: dict[str, Any] | None = None
    #: The epochs (from 0) at which it resumed from its checkpoint after its worker died or
    #: stopped: ``history`` before them is the earlier run's, not trained again.
    resumed_at_epochs: list[int] = []

    @classmethod
    def of(cls, trial: TrialRecord, rank: int | None, final_epochs: int | None = None) -> TrialOut:
        return cls(
            trial_id=trial.trial_id,
            rank=rank,
            status=trial.status.value,
            score=trial.score,
            hyperparameters=trial.hyperparameters,
            params=trial.params,
            epochs=trial.epochs,
            seconds=round(trial.seconds, 3),
            history=list(trial.history),
            error=trial.error,
            started_at=trial.started_at,
            finished_at=trial.finished_at,
            test_accuracy=trial.test_accuracy,
            stop_reason=trial.stop_reason,
            final_epochs=final_epochs,
            worker_id=trial.worker_id,
            hostname=trial.hostname,
            accelerator=trial.accelerator,
            resumed_at_epochs=list(trial.resumed_at_epochs),
        )


def final_epochs_by_trial(search: SearchRecord) -> dict[str, int]:
    """The epochs of each trial whose architecture was trained to the end (and exported)."""
    return {
        training.trial_id: training.epochs
        for training in search.final_training
        if training.error is None
    }


class FinalTrainingOut(BaseModel):
    """One of the best architectures trained again from scratch on the training and
    validation photos once the search ended; ``error`` says why it was not exported."""

    trial_id: str
    rank: int
    epochs: int
    images: int
    seconds: float
    test_accuracy: float | None
    error: str | None
    planned_epochs: int | None = None


class AttemptOut(BaseModel):
    """One claim of the search's finishing step (final training, export, close) by a worker;
    its trials' workers are on the leaderboard."""

    attempt: int
    worker_id: str
    started_at: datetime
    ended_at: datetime | None
    outcome: str
    error: str | None


class ExtensionOut(BaseModel):
    """More trials or seconds given to the search after it ended."""

    extended_at: datetime
    max_trials: int | None
    seconds: int | None
    #: The status it had ended with, and which limit had ended it.
    ended_as: str
    ended_by: str | None
    #: Wall-clock seconds it had run in all by then, and seconds of its budget spent.
    wall_seconds: float
    budget_spent: float
    attempts: int


class SearchOut(BaseModel):
    """A search and its progress."""

    id: str
    owner: str
    status: str
    spec: SearchSpec
    trials_planned: int
    trials_done: int
    best_trial: TrialOut | None
    accelerator: dict[str, Any] | None
    precision: str | None
    dataset: dict[str, Any] | None
    attempt: int
    attempts: list[AttemptOut]
    cancel_requested: bool
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    ended_by: str | None = None
    wall_seconds: float | None = None
    training_seconds: float | None = None
    final_training: list[FinalTrainingOut] = []
    #: When its current run started (its first start, or the first after its latest
    #: extension): a time budget counts from here, on what earlier runs left of it.
    resumed_at: datetime | None = None
    extensions: list[ExtensionOut] = []

    @classmethod
    def of(cls, search: SearchRecord) -> SearchOut:
        best = search.best_trial
        return cls(
            id=search.id,
            owner=search.owner,
            status=search.status.value,
            spec=SearchSpec.model_validate(search.spec),
            trials_planned=search.trials_planned,
            trials_done=search.trials_done,
            best_trial=(
                TrialOut.of(best, 1, final_epochs_by_trial(search).get(best.trial_id))
                if best
                else None
            ),
            accelerator=search.accelerator,
            precision=search.precision,
            dataset=search.dataset_info,
            attempt=search.attempt,
            attempts=[
                AttemptOut(**{**vars(attempt), "outcome": attempt.outcome.value})
                for attempt in search.attempts
            ],
            cancel_requested=search.cancel_requested,
            error=search.error,
            created_at=search.created_at,
            started_at=search.started_at,
            finished_at=search.finished_at,
            ended_by=search.ended_by,
            wall_seconds=search.wall_seconds,
            training_seconds=search.training_seconds,
            final_training=[
                FinalTrainingOut(**{**vars(training), "seconds": round(training.seconds, 3)})
                for training in search.final_training
            ],
            resumed_at=search.resumed_at,
            extensions=[ExtensionOut(**vars(extension)) for extension in search.extensions],
        )


class SearchList(BaseModel):
    items: list[SearchOut]
    total: int
    limit: int
    offset: int
    #: Pass as ``cursor`` for the next page; null on the last one.
    next_cursor: str | None


class Leaderboard(BaseModel):
    search_id: str
    objective: str
    trials: list[TrialOut]


class ModelOut(BaseModel):
    """An exported model and where to fetch its files."""

    rank: int
    trial_id: str
    score: float | None
    test_accuracy: float | None
    params: int
    formats: list[str]
    created_at: datetime
    links: dict[str, str]

    @classmethod
    def of(cls, model: ExportedModel) -> ModelOut:
        base = f"/v1/searches/{model.search_id}/models/{model.rank}"
        links = {"summary": f"{base}/summary"} | {fmt: f"{base}/{fmt}" for fmt in model.formats}
        return cls(
            rank=model.rank,
            trial_id=model.trial_id,
            score=model.score,
            test_accuracy=model.test_accuracy,
            params=model.params,
            formats=list(model.formats),
            created_at=model.created_at,
            links=links,
        )


class ModelList(BaseModel):
    search_id: str
    models: list[ModelOut]
