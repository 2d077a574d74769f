"""Immutable records the storage layer hands out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class SearchStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """Whether the search will never change again."""
        return self in {SearchStatus.SUCCEEDED, SearchStatus.FAILED, SearchStatus.CANCELLED}


class TrialStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    #: Its worker stopped mid-trial; the trial is rerun when the search resumes.
    INTERRUPTED = "interrupted"


class EndedBy(StrEnum):
    """The limit that ended a search."""

    #: Its time budget was spent.
    BUDGET = "budget"
    #: The tuner ran all its trials (or the space had no more to give).
    MAX_TRIALS = "max_trials"
    CANCELLED = "cancelled"
    #: Something went wrong; the search's error says what.
    ERROR = "error"


class AttemptOutcome(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: The worker shut down cleanly and gave the finishing step back.
    RELEASED = "released"
    #: The worker stopped heartbeating (crashed, killed, cut off).
    LEASE_EXPIRED = "lease_expired"


@dataclass(frozen=True)
class AttemptRecord:
    """One claim of a search's finishing step by a worker, and how it ended."""

    attempt: int
    worker_id: str
    started_at: datetime
    ended_at: datetime | None
    outcome: AttemptOutcome
    error: str | None


@dataclass(frozen=True)
class TrialRecord:
    """One trial of a search, with its per-epoch metrics so far."""

    search_id: str
    trial_id: str
    status: TrialStatus
    hyperparameters: dict[str, Any]
    score: float | None
    params: int | None
    epochs: int
    seconds: float
    history: tuple[dict[str, float], ...]
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    #: The epochs (from 0) at which a run of the trial resumed from the checkpoint of an
    #: earlier one that had stopped (its worker died, stopped or lost its lease), oldest
    #: first: the earlier epochs of ``history`` are that run's.
    resumed_at_epochs: tuple[int, ...] = ()
    #: The test accuracy of the trial's exported model; None unless it was exported with
    #: test photos to measure.
    test_accuracy: float | None = None
    #: Why the trial stopped before its last epoch (a pruner, the budget); None otherwise.
    stop_reason: str | None = None
    #: Where it ran (last): the worker, its host and the devices it trained on.
    worker_id: str | None = None
    hostname: str | None = None
    accelerator: dict[str, Any] | None = None
    #: Leases lost in a row without a newly finished epoch.
    lost_leases: int = 0

    @property
    def key(self) -> tuple[str, str]:
        """(search id, trial id): what identifies a trial in the store."""
        return self.search_id, self.trial_id


@dataclass(frozen=True)
class FinalTraining:
    """One of the search's best architectures trained again from scratch on the training and
    validation photos once exploration ended; its model is exported in the trial's place."""

    trial_id: str
    #: The rank of the trial (and of its exported model).
    rank: int
    epochs: int
    #: How many photos it trained on: the search's training and validation photos.
    images: int
    seconds: float
    #: Accuracy on the search's test photos; None without any.
    test_accuracy: float | None
    #: Why it failed (the trial's own checkpoint was exported instead); None when it did not.
    error: str | None = None
    #: The epochs its schedule spanned when the budget's deadline stopped it after ``epochs``;
    #: None when it trained them all.
    planned_epochs: int | None = None


@dataclass(frozen=True)
class Extension:
    """More trials or seconds given to a search after it ended: it went back to the queue and
    its tuner continued where it had stopped, its trials kept."""

    extended_at: datetime
    #: Trials added to ``tuner.max_trials`` (asha: configurations); None when only seconds were.
    max_trials: int | None
    #: Seconds added to ``budget.seconds``; None when only trials were.
    seconds: int | None
    #: The status it had ended with, and which limit had ended it.
    ended_as: str
    ended_by: str | None
    #: Wall-clock seconds it had run in all before it (idle time between runs not counted).
    wall_seconds: float
    #: Seconds of its time budget it had spent (0 without a budget): its clock goes on from
    #: there when a worker next claims it.
    budget_spent: float
    #: The finishing steps it had claimed by then (its attempts).
    attempts: int


@dataclass(frozen=True)
class SearchRecord:
    """A search job and how far it got."""

    id: str
    owner: str
    status: SearchStatus
    spec: dict[str, Any]
    trials_planned: int
    trials_done: int
    best_trial: TrialRecord | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    #: The worker holding the finishing step now, its attempt and lease (see ``attempts``).
    worker_id: str | None
    attempt: int
    lease_expires_at: datetime | None
    cancel_requested: bool
    accelerator: dict[str, Any] | None
    precision: str | None
    dataset_info: dict[str, Any] | None
    error: str | None
    attempts: tuple[AttemptRecord, ...]
    #: Changes with every write to the search or its trials: what its ETags are made of.
    revision: int = 0

    #: Which limit ended the search (see :class:`EndedBy`); None until it ends.
    ended_by: str | None = None
    #: Wall-clock seconds from the first start to the end, and training seconds summed over
    #: its trials; None until it ends.
    wall_seconds: float | None = None
    training_seconds: float | None = None

    #: The final trainings of its best architectures, best first (none before the search ends).
    final_training: tuple[FinalTraining, ...] = ()

    #: When its current run started: its first claim, or the first claim after its latest
    #: extension (None until then). Its budget's clock runs from here.
    resumed_at: datetime | None = None
    #: The extensions it was given, oldest first.
    extensions: tuple[Extension, ...] = ()

    @property
    def budget_spent_before_resuming(self) -> float:
        """Seconds of its time budget its runs before ``resumed_at`` spent."""
        return self.extensions[-1].budget_spent if self.extensions else 0.0

    @property
    def key(self) -> SearchKey:
        """Where the search sits in lists, newest first."""
        return SearchKey(created_at=self.created_at, id=self.id)


@dataclass(frozen=True)
class SearchKey:
    """The sort key of searches in lists (newest first): a page's cursor is its last one."""

    created_at: datetime
    id: str


@dataclass(frozen=True)
class SearchRevision:
    """Who owns a search and how many times it was written: enough to revalidate a copy."""

    owner: str
    revision: int


@dataclass(frozen=True)
class Lease:
    """The right of one worker to take one attempt at a search's finishing step (final
    training, export, close); the attempt number is its fencing token."""

    search_id: str
    worker_id: str
    attempt: int


@dataclass(frozen=True)
class SlotLease:
    """The right of one worker to run trials of a search in one slot. ``slot_id`` is the
    fencing token, and the KerasTuner tuner id the search's oracle hands trials out to."""

    slot_id: str
    search_id: str
    worker_id: str


class DataStepState(StrEnum):
    """Where a search's data step stands: its photos scanned, decoded and split once, by one
    slot, into the search's artifacts, for every other slot and its finishing step to read."""

    #: Nobody prepares the data now: the next slot that needs it claims the step.
    PENDING = "pending"
    #: A slot prepares it under the step's lease.
    PREPARING = "preparing"
    #: The prepared data lies in the search's artifacts; the step records what it holds.
    READY = "ready"
    #: The photos cannot be used (the step's error says why); the search failed with it.
    FAILED = "failed"


@dataclass(frozen=True)
class DataStepRecord:
    """A search's data step: who holds (or last held) it, and what the prepared data holds."""

    search_id: str
    state: DataStepState
    #: The slot (its id) that holds the step, or prepared the data once it is ready; None
    #: while pending.
    holder: str | None
    #: The worker of that slot.
    worker_id: str | None
    #: Claims of the step so far: the fencing token of its latest holder.
    token: int
    lease_expires_at: datetime | None
    #: Leases lost in a row since a holder last decoded more photos than any before it.
    lost_leases: int
    #: Photos its current (or last) holder decoded, and the most any holder decoded.
    images_decoded: int
    images_reached: int
    #: Once ready: the prepared data's ``file`` (in the search's ``data`` folder), its size,
    #: fingerprint and counts (the worker's ``SearchData.info``); empty before.
    info: dict[str, Any]
    error: str | None
    prepared_at: datetime | None
    #: The workers (their ids) whose hosts cannot read the search's photos, and since when
    #: the first noted so: they never claim the step, and once every live worker has been
    #: among them for a lease the step and its search fail.
    unreadable_by: tuple[str, ...] = ()
    unreadable_since: datetime | None = None


@dataclass(frozen=True)
class DataLease:
    """The right of one slot (``holder``, its id) to prepare a search's data; ``token`` (the
    step's claim count) fences it."""

    search_id: str
    holder: str
    worker_id: str
    token: int


@dataclass(frozen=True)
class OracleContext:
    """What a worker reconciles the search's oracle with, under the search's lock: the slots
    still alive (a dead slot's ongoing trial is run again) and the trials the store failed
    because their slots kept dying without progress (trial id to reason)."""

    live_slots: frozenset[str]
    failed_trials: dict[str, str]


@dataclass(frozen=True)
class OracleOutcome(Generic[T]):
    """What one step of the oracle returns, and whether it hands out no more trials (None:
    the step tells nothing of it, and the store keeps what it knows)."""

    value: T
    trials_exhausted: bool | None = None


@dataclass(frozen=True)
class RunningTrial:
    """A trial a worker runs now."""

    search_id: str
    trial_id: str | None


@dataclass(frozen=True)
class ExportedModel:
    """A model exported at the end of a search, ranked from 1."""

    search_id: str
    rank: int
    trial_id: str
    score: float | None
    params: int
    formats: tuple[str, ...]
    created_at: datetime
    #: Accuracy on the search's test photos, which no trial saw; None without any.
    test_accuracy: float | None = None


@dataclass(frozen=True)
class WorkerRecord:
    """A worker process and what it is doing."""

    id: str
    hostname: str
    pid: int
    backend: str
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    #: Trials it runs at once.
    slots: int = 1
    #: The devices its trials train on; None until a slot of it looked.
    accelerator: dict[str, Any] | None = None
    #: What its slots run now (a trial id is None while a slot is between trials).
    current_trials: tuple[RunningTrial, ...] = ()


@dataclass(frozen=True)
class TokenRecord:
    """An API token as the store keeps it: who it speaks for, never its secret or hash."""

    id: str
    owner: str
    admin: bool
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def active(self) -> bool:
        """Whether the token still opens the API."""
        return self.revoked_at is None
