"""ORM tables. Only the storage layer imports this module."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class SearchRow(Base):
    __tablename__ = "searches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    trials_planned: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    worker_id: Mapped[str | None] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    accelerator: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    precision: Mapped[str | None] = mapped_column(String(32))
    dataset_info: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    dataset_fingerprint: Mapped[str | None] = mapped_column(String(64), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    request_hash: Mapped[str | None] = mapped_column(String(64))
    #: Bumped by every write to the search, its trials or its models (what its ETags are of).
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    ended_by: Mapped[str | None] = mapped_column(String(16))
    wall_seconds: Mapped[float | None] = mapped_column(Float)
    training_seconds: Mapped[float | None] = mapped_column(Float)
    final_training: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    #: The oracle hands out no more trials (it said STOPPED, or the budget is spent): no worker
    #: joins the search, and once its slots are gone its finishing step may begin.
    trials_exhausted: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    #: The most slots the search may hold at once (``tuner.max_parallel_trials``); None: any.
    max_parallel_trials: Mapped[int | None] = mapped_column(Integer)
    #: The first claim of the current run (of the first run, or after the latest extension).
    resumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Each extension as the store's ``Extension`` record has it, with the idempotency key
    #: and request hash of the request that made it.
    extensions: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)


class AttemptRow(Base):
    __tablename__ = "search_attempts"

    search_id: Mapped[str] = mapped_column(
        ForeignKey("searches.id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    worker_id: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)


class TrialRow(Base):
    __tablename__ = "trials"

    search_id: Mapped[str] = mapped_column(
        ForeignKey("searches.id", ondelete="CASCADE"), primary_key=True
    )
    trial_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    score: Mapped[float | None] = mapped_column(Float)
    params: Mapped[int | None] = mapped_column(Integer)
    epochs: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    history: Mapped[list[dict[str, float]]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stop_reason: Mapped[str | None] = mapped_column(Text)
    #: Where it ran (last): the worker, its host, and the devices its slot trained on.
    worker_id: Mapped[str | None] = mapped_column(String(64))
    hostname: Mapped[str | None] = mapped_column(String(255))
    accelerator: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: Leases lost in a row since the trial last finished an epoch it never had before.
    lost_leases: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: The most epochs any run of the trial finished (a rerun's progress is past it).
    epochs_reached: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class SlotRow(Base):
    """A worker's slot in a search: it runs one trial at a time, under its own lease. Its id
    is the KerasTuner tuner id its trials are handed out to, and its fencing token."""

    __tablename__ = "search_slots"

    slot_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    search_id: Mapped[str] = mapped_column(
        ForeignKey("searches.id", ondelete="CASCADE"), index=True
    )
    worker_id: Mapped[str] = mapped_column(String(64), index=True)
    hostname: Mapped[str] = mapped_column(String(255))
    accelerator: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: The trial it runs now; None between trials.
    trial_id: Mapped[str | None] = mapped_column(String(64))


class DataStepRow(Base):
    """A search's data step: its photos prepared once, under the step's own lease, into the
    search's artifacts. ``token`` counts the claims and fences the latest holder."""

    __tablename__ = "search_data_steps"

    search_id: Mapped[str] = mapped_column(
        ForeignKey("searches.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[str] = mapped_column(String(16))
    #: The slot that holds the step (or prepared the data).
    holder: Mapped[str | None] = mapped_column(String(32))
    worker_id: Mapped[str | None] = mapped_column(String(64))
    token: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    #: Leases lost in a row since a holder last decoded more photos than any before it.
    lost_leases: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    images_decoded: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    images_reached: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    info: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    prepared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The workers (their ids) that noted that their hosts cannot read the search's photos,
    #: and when the first did.
    unreadable_by: Mapped[list[str] | None] = mapped_column(JSON)
    unreadable_since: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ModelRow(Base):
    __tablename__ = "exported_models"

    search_id: Mapped[str] = mapped_column(
        ForeignKey("searches.id", ondelete="CASCADE"), primary_key=True
    )
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[str] = mapped_column(String(64))
    score: Mapped[float | None] = mapped_column(Float)
    params: Mapped[int] = mapped_column(Integer)
    formats: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    test_accuracy: Mapped[float | None] = mapped_column(Float)


class WorkerRow(Base):
    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    backend: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Trials it runs at once (NAS_PARALLEL_TRIALS).
    slots: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    #: The devices its trials train on, once a slot of it has looked.
    accelerator: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class TokenRow(Base):
    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    admin: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
