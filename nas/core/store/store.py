"""The store: every read and write of searches, trials, models and workers.

Callers pass ids and get frozen records back. Each public method is one transaction;
``_transaction`` is the one place that commits or rolls back. Every write to a search, its
trials or its models bumps the search's revision in that transaction, through ``_revised``.
"""

from __future__ import annotations

import functools
import hmac
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import (
    Engine,
    Update,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal_column,
    null,
    or_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, defer, sessionmaker

from nas.core.errors import (
    IdempotencyConflictError,
    LeaseLostError,
    QueueFullError,
    StaleSearchError,
    StoreError,
    StoreUnavailableError,
)
from nas.core.store.engine import IMMEDIATE, make_engine
from nas.core.store.ranking import best_completed, best_score
from nas.core.store.records import (
    AttemptOutcome,
    AttemptRecord,
    DataLease,
    DataStepRecord,
    DataStepState,
    EndedBy,
    ExportedModel,
    Extension,
    FinalTraining,
    Lease,
    OracleContext,
    OracleOutcome,
    RunningTrial,
    SearchKey,
    SearchRecord,
    SearchRevision,
    SearchStatus,
    SlotLease,
    TokenRecord,
    TrialRecord,
    TrialStatus,
    WorkerRecord,
)
from nas.core.store.tables import (
    AttemptRow,
    DataStepRow,
    ModelRow,
    SearchRow,
    SlotRow,
    TokenRow,
    TrialRow,
    WorkerRow,
)

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class _DuplicateKeyError(StoreError):
    """A write broke a unique constraint (another transaction won a race)."""


def is_transient(error: BaseException) -> bool:
    """Whether a database error may go away on retry (server restart, lock, dropped link)."""
    if isinstance(error, OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def retried(method: Callable[Concatenate[Store, P], R]) -> Callable[Concatenate[Store, P], R]:
    """Re-run a store method on transient database errors, with exponential backoff, for up
    to the store's ``retry_seconds``; each run is a whole new transaction."""

    @functools.wraps(method)
    def wrapper(self: Store, *args: P.args, **kwargs: P.kwargs) -> R:
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.1
        while True:
            try:
                return method(self, *args, **kwargs)
            except StoreUnavailableError as error:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("%s; retrying in %.1f s", error, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    return wrapper


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SearchPage:
    """One page of searches, newest first."""

    items: tuple[SearchRecord, ...]
    total: int
    #: Where the next page starts (the key of this one's last search); None on the last page.
    next_key: SearchKey | None = None


@dataclass(frozen=True)
class Submission:
    """The outcome of a submit (or an extension): the search, and whether this call created
    (or extended) it rather than repeat an earlier request with the same idempotency key."""

    search: SearchRecord
    created: bool


@dataclass(frozen=True)
class LeaseState:
    """What a heartbeat learns: whether the user asked the search to stop."""

    cancel_requested: bool


class Store:
    """Persistent state of the service, on SQLite or PostgreSQL."""

    def __init__(self, engine: Engine, *, retry_seconds: float = 0.0) -> None:
        self.engine = engine
        self.retry_seconds = retry_seconds
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False)
        self._writer_sessions = sessionmaker(
            bind=engine.execution_options(**{IMMEDIATE: True}), expire_on_commit=False
        )

    @contextmanager
    def _transaction(self, *, write: bool = False) -> Iterator[Session]:
        factory = self._writer_sessions if write else self._sessions
        try:
            with factory() as session, session.begin():
                yield session
        except DBAPIError as error:
            # No SQLAlchemy type leaves the store: callers see its own errors.
            if is_transient(error):
                raise StoreUnavailableError(
                    f"the database is unavailable ({type(error).__name__})"
                ) from error
            if isinstance(error, IntegrityError):
                raise _DuplicateKeyError(str(error.orig)) from error
            refused = f"the database refused the request ({type(error).__name__})"
            raise StoreError(refused) from error

    def dispose(self) -> None:
        """Close pooled connections (before forking, at shutdown)."""
        self.engine.dispose()

    @retried
    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self._transaction() as session:
            session.execute(select(1))

    # Searches -------------------------------------------------------------------------

    @retried
    def create_search(
        self,
        spec: dict[str, Any],
        trials_planned: int,
        *,
        owner: str,
        max_queued: int | None = None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> Submission:
        """Queue a new search of ``owner``; with an idempotency key, a repeat of the same
        request returns the search it created.

        Raises:
            QueueFullError: ``owner`` already has ``max_queued`` queued searches.
            IdempotencyConflictError: the key was used with a different request.
        """
        if idempotency_key is not None and (
            earlier := self.find_submission(idempotency_key, request_hash)
        ):
            return earlier
        row = SearchRow(
            id=uuid.uuid4().hex,
            owner=owner,
            status=SearchStatus.QUEUED.value,
            spec=spec,
            trials_planned=trials_planned,
            created_at=utcnow(),
            attempt=0,
            cancel_requested=False,
            revision=0,
            max_parallel_trials=spec.get("tuner", {}).get("max_parallel_trials"),
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        )
        try:
            with self._transaction(write=True) as session:
                if max_queued is not None and _queued_count(session, owner) >= max_queued:
                    raise QueueFullError(owner, max_queued)
                session.add(row)
                session.flush()  # before its data step, which refers to it
                session.add(_new_data_step(row.id))
                session.flush()
                return Submission(search=_search_record(row, [], None, []), created=True)
        except _DuplicateKeyError:
            # Another request with the same key won the race.
            earlier = (
                self.find_submission(idempotency_key, request_hash) if idempotency_key else None
            )
            if earlier is None:
                raise
            return earlier

    @retried
    def find_submission(self, idempotency_key: str, request_hash: str | None) -> Submission | None:
        """The search an idempotency key created, if the request matches (else a conflict)."""
        with self._transaction() as session:
            row = session.scalar(
                select(SearchRow).where(SearchRow.idempotency_key == idempotency_key)
            )
            if row is None:
                return None
            if row.request_hash != request_hash:
                raise IdempotencyConflictError(
                    "this Idempotency-Key was already used with a different request"
                )
            return Submission(search=_search_records(session, [row])[0], created=False)

    @retried
    def extend_search(
        self,
        search_id: str,
        *,
        revision: int,
        spec: dict[str, Any],
        trials_planned: int,
        extension: Extension,
        max_queued: int | None = None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> Submission | None:
        """Queue an ended search again with ``spec`` (more trials or seconds), recording
        ``extension``: its trials, exported models and first start are kept, what its end
        recorded is cleared, and its next claim starts a new run. ``revision`` is the one the
        caller read the search at (and judged it on). With an idempotency key, a repeat of the
        same request returns the search as it is now. None when there is no such search.

        Raises:
            StaleSearchError: the search changed since ``revision``, or has not ended.
            QueueFullError: its owner already has ``max_queued`` queued searches.
            IdempotencyConflictError: the key was used with a different request.
        """
        with self._transaction(write=True) as session:
            row = session.get(SearchRow, search_id, with_for_update=True)
            if row is None:
                return None
            extensions = list(row.extensions or [])
            if idempotency_key is not None and _keyed_extension(
                extensions, idempotency_key, request_hash
            ):
                return Submission(search=_search_records(session, [row])[0], created=False)
            if row.revision != revision or not SearchStatus(row.status).terminal:
                raise StaleSearchError(f"search {search_id} changed meanwhile; read it again")
            if max_queued is not None and _queued_count(session, row.owner) >= max_queued:
                raise QueueFullError(row.owner, max_queued)
            extensions.append(
                asdict(extension)
                | {
                    "extended_at": extension.extended_at.isoformat(),
                    "idempotency_key": idempotency_key,
                    "request_hash": request_hash,
                }
            )
            row.status = SearchStatus.QUEUED.value
            row.spec, row.trials_planned, row.extensions = spec, trials_planned, extensions
            row.finished_at, row.ended_by, row.error, row.cancel_requested = None, None, None, False
            row.wall_seconds, row.training_seconds, row.final_training = None, None, None
            row.resumed_at = None  # the next slot starts its new run
            # Workers join it again; its next finishing step is claimed anew.
            row.trials_exhausted, row.worker_id, row.lease_expires_at = False, None, None
            _revise(session, search_id)
            return Submission(search=_search_records(session, [row])[0], created=True)

    @retried
    def find_extension(
        self, search_id: str, idempotency_key: str, request_hash: str | None
    ) -> SearchRecord | None:
        """The search as it is now, if an idempotency key already extended it with the same
        request (else a conflict); None if the key did not."""
        with self._transaction() as session:
            row = session.get(SearchRow, search_id)
            if row is None or not _keyed_extension(
                row.extensions or [], idempotency_key, request_hash
            ):
                return None
            return _search_records(session, [row])[0]

    @retried
    def get_search(self, search_id: str) -> SearchRecord | None:
        """The search with its progress, or None."""
        with self._transaction() as session:
            row = session.get(SearchRow, search_id)
            return None if row is None else _search_records(session, [row])[0]

    @retried
    def get_revision(self, search_id: str) -> SearchRevision | None:
        """The search's owner and revision, or None: one row of one table, none of its trials."""
        with self._transaction() as session:
            found = session.execute(
                select(SearchRow.owner, SearchRow.revision).where(SearchRow.id == search_id)
            ).first()
            return (
                None
                if found is None
                else SearchRevision(owner=found.owner, revision=found.revision)
            )

    @retried
    def is_cancel_requested(self, search_id: str) -> bool:
        """Whether the user asked this search to stop."""
        with self._transaction() as session:
            return bool(
                session.scalar(select(SearchRow.cancel_requested).where(SearchRow.id == search_id))
            )

    @retried
    def list_searches(
        self,
        *,
        limit: int,
        owner: str | None,
        offset: int = 0,
        after: SearchKey | None = None,
    ) -> SearchPage:
        """Searches of ``owner`` (of everyone when None), newest first: those older than
        ``after`` (a page's ``next_key``, stable however many are submitted meanwhile), less
        the first ``offset``."""
        mine = () if owner is None else (SearchRow.owner == owner,)
        older = () if after is None else (_older_than(after),)
        with self._transaction() as session:
            total = session.scalar(select(func.count()).select_from(SearchRow).where(*mine)) or 0
            rows = session.scalars(
                select(SearchRow)
                .where(*mine, *older)
                .order_by(SearchRow.created_at.desc(), SearchRow.id.desc())
                .limit(limit + 1)  # one more tells whether there is a next page
                .offset(offset)
            ).all()
            items = tuple(_search_records(session, rows[:limit]))
            next_key = items[-1].key if len(rows) > limit else None
            return SearchPage(items=items, total=total, next_key=next_key)

    @retried
    def request_cancel(self, search_id: str) -> SearchRecord | None:
        """Cancel a queued search now; ask the worker of a running one to stop."""
        with self._transaction(write=True) as session:
            row = session.get(SearchRow, search_id)
            if row is None:
                return None
            if row.status == SearchStatus.QUEUED:
                row.status, row.ended_by = SearchStatus.CANCELLED.value, EndedBy.CANCELLED.value
                row.finished_at = utcnow()
            elif row.status == SearchStatus.RUNNING:
                row.cancel_requested = True
            _revise(session, search_id)
            return _search_records(session, [row])[0]

    # Slots: the trials of running searches, spread over workers -----------------------

    @retried
    def join_next(self, worker_id: str, *, hostname: str, lease_seconds: float) -> SlotLease | None:
        """Take a slot, under its own lease, in the search that needs one most: of the queued
        and running searches that still hand out trials and have room for another slot, the
        one with the fewest slots, the oldest among equals. Marks it running. None when no
        search needs a slot."""
        now = utcnow()
        slots = _slot_count(SearchRow.id).scalar_subquery()
        with self._transaction(write=True) as session:
            chosen = session.execute(
                select(SearchRow.id)
                .where(*_wants_slots(slots))
                .order_by(slots, SearchRow.created_at, SearchRow.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).scalar_one_or_none()
            if chosen is None:
                return None
            row = session.get(SearchRow, chosen)
            if row is None:
                return None
            # Counted again under the row lock: a slot may have joined since the query began.
            if (
                row.max_parallel_trials is not None
                and (session.scalar(_slot_count(chosen)) or 0) >= row.max_parallel_trials
            ):
                return None
            row.status = SearchStatus.RUNNING.value
            row.started_at = row.started_at or now
            row.resumed_at = row.resumed_at or now
            _revise(session, chosen)
            slot = SlotRow(
                slot_id=uuid.uuid4().hex,
                search_id=chosen,
                worker_id=worker_id,
                hostname=hostname,
                joined_at=now,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
            )
            session.add(slot)
            return SlotLease(slot_id=slot.slot_id, search_id=chosen, worker_id=worker_id)

    @retried
    def slot_should_yield(self, lease: SlotLease) -> bool:
        """Whether the slot's search holds two slots more than another search that wants one:
        the slot leaves between two trials then, so searches share the workers in turn."""
        slots = _slot_count(SearchRow.id).scalar_subquery()
        with self._transaction() as session:
            mine = session.scalar(_slot_count(lease.search_id)) or 0
            fewest = session.scalar(
                select(func.min(slots)).where(*_wants_slots(slots), SearchRow.id != lease.search_id)
            )
            return fewest is not None and fewest + 1 < mine

    @retried
    def renew_slot(self, lease: SlotLease, lease_seconds: float) -> LeaseState:
        """Extend a slot's lease (its heartbeat), not that of a data step it holds (only its
        progress renews that); raises LeaseLostError if it is gone."""
        with self._transaction(write=True) as session:
            renewed = session.execute(
                update(SlotRow)
                .where(*_slot_held_by(lease))
                .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
                .execution_options(synchronize_session=False)
            ).rowcount
            if not renewed:
                raise LeaseLostError(_slot_lost(lease))
            return LeaseState(
                cancel_requested=bool(
                    session.scalar(
                        select(SearchRow.cancel_requested).where(SearchRow.id == lease.search_id)
                    )
                )
            )

    @retried
    def check_slot(self, lease: SlotLease) -> None:
        """Raise LeaseLostError unless the slot's lease still holds (before writing files)."""
        with self._transaction(write=True) as session:
            _check_slot(session, lease)

    @retried
    def oracle_step(self, lease: SlotLease, step: Callable[[OracleContext], OracleOutcome[T]]) -> T:
        """Run ``step`` on the search's oracle under the search's lock, fenced by the slot's
        lease, and note whether the oracle hands out more trials, all in one transaction.

        ``step`` gets the live slots and the trials the store failed, to reconcile the oracle's
        saved state with them; it works on files only and must not call the store (on SQLite
        this transaction holds the database's write lock). Runs again on a transient error:
        ``step`` must reload the oracle's state each time.
        """
        with self._transaction(write=True) as session:
            # Its one write is whether the oracle hands out more trials, which the slots'
            # next steps say again if a crash of the server loses it; the lock is held until
            # the commit returns.
            _commit_without_flush(session)
            # Core statements built once: each step is under the lock, and their building and
            # the ORM's handling cost more than the database's answer.
            connection = session.connection()
            bound = {"search_id": lease.search_id}
            # The lock in a statement of its own: on PostgreSQL each statement sees what was
            # committed when it began, so the next one sees the step that held the lock last.
            exhausted_before = connection.execute(_LOCK_RUNNING_SEARCH, bound).scalar()
            live: set[str] = set()
            failed: dict[str, str] = {}
            for kind, key, error in connection.execute(_SLOTS_AND_FAILED_TRIALS, bound):
                if kind == _LIVE_SLOT:
                    live.add(key)
                else:
                    failed[key] = error or "failed"
            if exhausted_before is None or lease.slot_id not in live:
                raise LeaseLostError(_slot_lost(lease))
            outcome = step(OracleContext(live_slots=frozenset(live), failed_trials=failed))
            exhausted = outcome.trials_exhausted
            if exhausted is not None and exhausted != exhausted_before:
                session.execute(
                    _revised(update(SearchRow))
                    .where(SearchRow.id == lease.search_id)
                    .values(trials_exhausted=exhausted)
                    .execution_options(synchronize_session=False)
                )
            return outcome.value

    @retried
    def record_run_context(
        self,
        lease: SlotLease,
        *,
        accelerator: dict[str, Any],
        precision: str,
        dataset_info: dict[str, Any],
    ) -> None:
        """Note where a slot trains (on the slot, its worker and, first, the search) and, from
        the first slot that loaded the data, how the search trains: precision and data (its
        ``fingerprint``, if any, kept indexed for :meth:`warm_start_configurations`)."""
        with self._transaction(write=True) as session:
            _check_slot(session, lease)
            session.execute(
                update(SlotRow)
                .where(SlotRow.slot_id == lease.slot_id)
                .values(accelerator=accelerator)
                .execution_options(synchronize_session=False)
            )
            session.execute(
                update(WorkerRow)
                .where(WorkerRow.id == lease.worker_id)
                .values(accelerator=accelerator)
                .execution_options(synchronize_session=False)
            )
            session.execute(
                update(SearchRow)
                .where(SearchRow.id == lease.search_id, SearchRow.dataset_info.is_(None))
                .values(
                    accelerator=accelerator,
                    precision=precision,
                    dataset_info=dataset_info,
                    dataset_fingerprint=dataset_info.get("fingerprint"),
                )
                .execution_options(synchronize_session=False)
            )

    @retried
    def mark_trials_exhausted(self, lease: SlotLease) -> None:
        """Note that the search hands out no more trials (its time budget is spent)."""
        with self._transaction(write=True) as session:
            _check_slot(session, lease)
            session.execute(
                update(SearchRow)
                .where(SearchRow.id == lease.search_id)
                .values(trials_exhausted=True)
                .execution_options(synchronize_session=False)
            )

    @retried
    def leave_slot(self, lease: SlotLease, *, died: bool, max_attempts: int) -> None:
        """Give a slot up. A trial it left running is run again by another slot, unless the
        slot ``died`` (its process crashed) ``max_attempts`` times in a row without a new
        epoch: the trial fails then. Raises LeaseLostError if the slot is gone already."""
        with self._transaction(write=True) as session:
            _revise(session, lease.search_id)
            slot = session.scalars(
                select(SlotRow).where(*_slot_held_by(lease)).with_for_update()
            ).one_or_none()
            if slot is None:
                raise LeaseLostError(_slot_lost(lease))
            _vacate(session, slot, lost=died, max_attempts=max_attempts)

    @retried
    def fail_search(self, lease: SlotLease, error: str) -> None:
        """End the search as failed from one of its slots (its data cannot be loaded); its
        other slots lose their leases."""
        with self._transaction(write=True) as session:
            _check_slot(session, lease)
            row = session.get(SearchRow, lease.search_id)
            if row is None:
                raise LeaseLostError(_slot_lost(lease))
            _fail_data_step(session, lease.search_id, lease.slot_id, error)
            _fail_running(session, row, error)

    @retried
    def reap_expired(self, max_attempts: int) -> list[str]:
        """Take back what workers that stopped answering held, returning the searches
        concerned: a slot's trial goes to another slot (it fails after ``max_attempts`` lost
        leases in a row without a new epoch); a finishing step goes to another worker (the
        search fails after ``max_attempts`` lost in a row); a data step goes back to pending
        (the search fails after ``max_attempts`` lost in a row without more photos decoded)."""
        now = utcnow()
        with self._transaction(write=True) as session:
            expired = session.execute(
                select(SlotRow.slot_id, SlotRow.search_id).where(SlotRow.lease_expires_at < now)
            ).all()
            for slot_id, search_id in expired:
                # The search's row first, as every writer of a search locks it.
                _revise(session, search_id)
                slot = session.scalars(
                    select(SlotRow)
                    .where(SlotRow.slot_id == slot_id, SlotRow.lease_expires_at < now)
                    .with_for_update(skip_locked=True)
                ).one_or_none()
                if slot is not None:
                    _vacate(session, slot, lost=True, max_attempts=max_attempts)
            finishing = session.scalars(
                select(SearchRow)
                .where(
                    SearchRow.status == SearchStatus.RUNNING.value,
                    SearchRow.lease_expires_at < now,
                )
                .with_for_update(skip_locked=True)
            ).all()
            for row in finishing:
                _end_attempt(session, row, AttemptOutcome.LEASE_EXPIRED, error=None)
                row.worker_id, row.lease_expires_at = None, None
                lost = _lost_in_a_row(session, row.id)
                if lost >= max_attempts:
                    message = f"the worker finishing the search stopped answering {lost} times"
                    _close(session, row, SearchStatus.FAILED, EndedBy.ERROR, message)
                _revise(session, row.id)
            preparing = _reap_data_steps(session, now, max_attempts)
            return sorted(
                {search_id for _, search_id in expired}
                | {row.id for row in finishing}
                | set(preparing)
            )

    @retried
    def claim_finishing(self, worker_id: str, lease_seconds: float) -> Lease | None:
        """Take the finishing step (final training, export, test, close) of the oldest running
        search that hands out no more trials (or was cancelled) and has no slot left."""
        now = utcnow()
        ready = (
            select(SearchRow.id)
            .where(
                SearchRow.status == SearchStatus.RUNNING.value,
                or_(SearchRow.trials_exhausted.is_(True), SearchRow.cancel_requested.is_(True)),
                SearchRow.worker_id.is_(None),
                _slot_count(SearchRow.id).scalar_subquery() == 0,
            )
            .order_by(SearchRow.created_at, SearchRow.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        claim = (
            _revised(update(SearchRow))
            .where(SearchRow.id == ready, SearchRow.worker_id.is_(None))
            .values(
                worker_id=worker_id,
                attempt=SearchRow.attempt + 1,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
            )
            .returning(SearchRow.id, SearchRow.attempt)
            .execution_options(synchronize_session=False)
        )
        with self._transaction(write=True) as session:
            claimed = session.execute(claim).first()
            if claimed is None:
                return None
            session.add(
                AttemptRow(
                    search_id=claimed.id,
                    attempt=claimed.attempt,
                    worker_id=worker_id,
                    started_at=now,
                    outcome=AttemptOutcome.RUNNING.value,
                )
            )
            return Lease(search_id=claimed.id, worker_id=worker_id, attempt=claimed.attempt)

    # The finishing step's lease -------------------------------------------------------

    @retried
    def renew_lease(self, lease: Lease, lease_seconds: float) -> LeaseState:
        """Extend the finishing step's lease (its heartbeat); raises LeaseLostError if it is
        gone."""
        with self._transaction(write=True) as session:
            cancel_requested = session.execute(
                update(SearchRow)
                .where(*_held_by(lease))
                .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
                .returning(SearchRow.cancel_requested)
                .execution_options(synchronize_session=False)
            ).scalar_one_or_none()
            if cancel_requested is None:
                raise LeaseLostError(f"search {lease.search_id} attempt {lease.attempt} lost")
            return LeaseState(cancel_requested=bool(cancel_requested))

    @retried
    def check_lease(self, lease: Lease) -> None:
        """Raise LeaseLostError unless the lease still holds (before writing files)."""
        with self._transaction(write=True) as session:
            _check_fence(session, lease)

    @retried
    def release(self, lease: Lease) -> None:
        """Give the finishing step back at once (a worker shutting down cleanly): another
        worker takes it."""
        with self._transaction(write=True) as session:
            row = _held_row(session, lease)
            _end_attempt(session, row, AttemptOutcome.RELEASED, error=None)
            row.worker_id, row.lease_expires_at = None, None

    # The data step: a search's photos prepared once, for every slot ----------------------

    @retried
    def get_data_step(self, search_id: str) -> DataStepRecord | None:
        """The search's data step, or None when there is no such search."""
        with self._transaction() as session:
            row = session.get(DataStepRow, search_id)
            return None if row is None else _data_step_record(row)

    @retried
    def claim_data_step(self, lease: SlotLease, lease_seconds: float) -> DataLease | None:
        """Take the search's data step for the slot of ``lease``, under a lease of its own
        that only :meth:`record_data_progress` renews (a holder that stalls loses it, however
        alive its slot); None unless the step is pending (another slot holds it, or the data
        is ready).

        Raises:
            LeaseLostError: the slot's lease does not hold.
        """
        pending = (
            select(DataStepRow.search_id)
            .where(
                DataStepRow.search_id == lease.search_id,
                DataStepRow.state == DataStepState.PENDING.value,
            )
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        claim = (
            update(DataStepRow)
            .where(
                DataStepRow.search_id == pending,
                DataStepRow.state == DataStepState.PENDING.value,
            )
            .values(
                state=DataStepState.PREPARING.value,
                holder=lease.slot_id,
                worker_id=lease.worker_id,
                token=DataStepRow.token + 1,
                lease_expires_at=utcnow() + timedelta(seconds=lease_seconds),
                images_decoded=0,
            )
            .returning(DataStepRow.token)
            .execution_options(synchronize_session=False)
        )
        with self._transaction(write=True) as session:
            # Locked, so that the slot cannot be taken back before the claim commits.
            held = select(SlotRow.slot_id).where(*_slot_held_by(lease)).with_for_update()
            if session.scalar(held) is None:
                raise LeaseLostError(_slot_lost(lease))
            token = session.execute(claim).scalar_one_or_none()
            if token is None:
                return None
            return DataLease(
                search_id=lease.search_id,
                holder=lease.slot_id,
                worker_id=lease.worker_id,
                token=token,
            )

    @retried
    def record_data_progress(
        self, lease: DataLease, images_decoded: int, lease_seconds: float
    ) -> None:
        """Note that the holder of the data step is still at work, having decoded
        ``images_decoded`` photos so far, and extend the step's lease by ``lease_seconds``
        (the one way to renew it). More photos than any holder before it decoded is
        progress, which forgives the step's lost leases.

        Raises:
            LeaseLostError: the data step's lease does not hold.
        """
        reached, lost = DataStepRow.images_reached, DataStepRow.lost_leases
        further = reached < images_decoded
        with self._transaction(write=True) as session:
            recorded = session.execute(
                update(DataStepRow)
                .where(*_data_held_by(lease))
                .values(
                    images_decoded=images_decoded,
                    images_reached=case((further, images_decoded), else_=reached),
                    lost_leases=case((further, 0), else_=lost),
                    lease_expires_at=utcnow() + timedelta(seconds=lease_seconds),
                )
                .execution_options(synchronize_session=False)
            ).rowcount
            if not recorded:
                raise LeaseLostError(_data_step_lost(lease))

    @retried
    def note_data_unreadable(
        self, lease: SlotLease, reason: str, *, live_seconds: float
    ) -> DataStepRecord:
        """Note that the worker of the slot of ``lease`` cannot read the search's photos on
        its host, so that it never prepares them (its slot waits for another worker's). Once
        the step, still pending, was first noted so ``live_seconds`` ago (time for a worker
        that can read them to start) and every live worker (registered, not stopped, its
        heartbeat within the last ``live_seconds``) has noted so, the step and the search
        fail with ``reason`` followed by the hosts of the workers that noted it. The step as
        it is then.

        Raises:
            LeaseLostError: the slot's lease does not hold.
        """
        now = utcnow()
        with self._transaction(write=True) as session:
            # The search's row first, as every writer of a search locks it.
            search = session.scalars(
                select(SearchRow).where(SearchRow.id == lease.search_id).with_for_update()
            ).one_or_none()
            held = select(SlotRow.slot_id).where(*_slot_held_by(lease)).with_for_update()
            if search is None or session.scalar(held) is None:
                raise LeaseLostError(_slot_lost(lease))
            step = session.scalars(
                select(DataStepRow).where(DataStepRow.search_id == search.id).with_for_update()
            ).one()
            if step.state != DataStepState.PENDING.value:
                return _data_step_record(step)
            unreadable = list(step.unreadable_by or ())
            if lease.worker_id not in unreadable:
                unreadable.append(lease.worker_id)
                step.unreadable_by = unreadable
            if step.unreadable_since is None:
                step.unreadable_since = now
            grace = timedelta(seconds=live_seconds)
            if now - step.unreadable_since < grace or SearchStatus(search.status).terminal:
                return _data_step_record(step)
            live_readers = session.scalar(
                select(func.count(WorkerRow.id)).where(
                    WorkerRow.stopped_at.is_(None),
                    WorkerRow.heartbeat_at >= now - grace,
                    WorkerRow.id.not_in(unreadable),
                )
            )
            if not live_readers:
                known = dict(
                    session.execute(
                        select(WorkerRow.id, WorkerRow.hostname).where(WorkerRow.id.in_(unreadable))
                    ).all()
                )
                hosts = sorted({known.get(worker_id, worker_id) for worker_id in unreadable})
                error = f"{reason}; hosts that cannot: {', '.join(hosts)}"
                step.state, step.error = DataStepState.FAILED.value, error
                _revise(session, search.id)
                _fail_running(session, search, error)
            return _data_step_record(step)

    @retried
    def mark_data_ready(self, lease: DataLease, info: dict[str, Any]) -> None:
        """Note that the search's data lies prepared in its artifacts, as ``info`` says (its
        file, fingerprint and counts): every slot reads it from there now.

        Raises:
            LeaseLostError: the data step's lease does not hold.
        """
        with self._transaction(write=True) as session:
            marked = session.execute(
                update(DataStepRow)
                .where(*_data_held_by(lease))
                .values(
                    state=DataStepState.READY.value,
                    info=info,
                    lease_expires_at=None,
                    prepared_at=utcnow(),
                )
                .execution_options(synchronize_session=False)
            ).rowcount
            if not marked:
                raise LeaseLostError(_data_step_lost(lease))

    @retried
    def warm_start_configurations(
        self, search_id: str, fingerprint: str, *, limit: int
    ) -> list[dict[str, Any]]:
        """The hyperparameters of the best trial of each of the latest ``limit`` succeeded
        searches of ``search_id``'s owner on photos of ``fingerprint`` (which covers the
        image size) and at the same image size, newest first."""
        with self._transaction() as session:
            search = session.get(SearchRow, search_id)
            if search is None:
                return []
            rows = session.scalars(
                select(SearchRow)
                .where(
                    SearchRow.owner == search.owner,
                    SearchRow.dataset_fingerprint == fingerprint,
                    SearchRow.status == SearchStatus.SUCCEEDED.value,
                    SearchRow.id != search_id,
                )
                .order_by(SearchRow.finished_at.desc())
            ).all()
            image_size = _image_size(search.spec)
            rows = [row for row in rows if _image_size(row.spec) == image_size][:limit]
            trials = _trials_of(session, [row.id for row in rows], with_history=False)
            best = (best_completed(trials.get(row.id, []), _objective(row)) for row in rows)
            return [dict(trial.hyperparameters) for trial in best if trial is not None]

    @retried
    def finish_search(
        self,
        lease: Lease,
        status: SearchStatus,
        error: str | None = None,
        *,
        ended_by: EndedBy | None = None,
    ) -> None:
        """End the attempt with a terminal status, recording which limit ended the search
        (by default the one its status implies) and what it spent: wall-clock seconds of its
        runs (from its first start, less the idle time before extensions) and training
        seconds summed over its trials."""
        if not status.terminal:
            raise ValueError(f"{status} is not a terminal status")
        if ended_by is None:
            ended_by = _ENDED_BY_DEFAULT[status]
        with self._transaction(write=True) as session:
            row = _held_row(session, lease)
            _end_attempt(session, row, AttemptOutcome(status.value), error=error)
            _close(session, row, status, ended_by, error)

    @retried
    def record_final_training(self, lease: Lease, trainings: Sequence[FinalTraining]) -> None:
        """Note how the search's best architectures were trained to the end."""
        self._write_fenced(lease, final_training=[asdict(training) for training in trainings])

    def _write_fenced(self, lease: Lease, **values: Any) -> None:
        with self._transaction(write=True) as session:
            _check_fence(session, lease)
            session.execute(
                update(SearchRow)
                .where(SearchRow.id == lease.search_id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )

    # Trials ---------------------------------------------------------------------------

    @retried
    def start_trial(self, lease: SlotLease, trial_id: str, hyperparameters: dict[str, Any]) -> None:
        """Record that a slot began a trial (again, if an earlier run was interrupted), and
        where it runs."""
        with self._transaction(write=True) as session:
            _check_slot(session, lease)
            slot = session.get(SlotRow, lease.slot_id)
            if slot is None:  # deleted under the search's lock: not while the lease holds
                raise LeaseLostError(_slot_lost(lease))
            slot.trial_id = trial_id
            row = session.get(TrialRow, (lease.search_id, trial_id))
            # A trial started before keeps its epochs until it trains: resume_trial decides.
            if row is None:
                row = TrialRow(
                    search_id=lease.search_id,
                    trial_id=trial_id,
                    lost_leases=0,
                    epochs_reached=0,
                    epochs=0,
                    seconds=0.0,
                    history=[],
                )
                session.add(row)
            row.worker_id, row.hostname = slot.worker_id, slot.hostname
            row.accelerator = slot.accelerator
            row.status = TrialStatus.RUNNING.value
            row.hyperparameters = hyperparameters
            row.error, row.stop_reason = None, None
            row.started_at, row.finished_at = utcnow(), None

    @retried
    def resume_trial(self, lease: SlotLease, trial_id: str, *, epochs: int) -> TrialRecord:
        """A started trial begins training, from the checkpoint of an earlier run that holds
        its first ``epochs`` epochs (0: from scratch): those are kept, with the seconds spent
        to reach them and their best score; the epochs an earlier run trained past them are
        dropped. Returns the trial as kept."""
        with self._transaction(write=True) as session:
            _check_slot(session, lease)
            row = _trial_row(session, lease.search_id, trial_id)
            search = session.get(SearchRow, lease.search_id)
            kept = [dict(epoch) for epoch in row.history[:epochs]]
            if kept:
                kept[-1][_RESUMED_AFTER] = 1.0
            else:
                row.params, row.seconds = None, 0.0
            row.history, row.epochs = kept, len(kept)
            row.score = None if search is None else best_score(_history(kept), _objective(search))
            return _trial_record(row, kept, None)

    @retried
    def record_epoch(
        self,
        lease: SlotLease,
        trial_id: str,
        *,
        epoch: int,
        metrics: dict[str, float],
        score: float | None,
        params: int,
        seconds: float,
    ) -> LeaseState:
        """Record epoch ``epoch`` (from 0) of a running trial; says whether to stop.

        Idempotent: a retried write of the same epoch replaces it rather than appending. An
        epoch no run of the trial finished before is progress: its lost leases are forgiven.
        """
        with self._transaction(write=True) as session:
            cancel_requested = _check_slot(session, lease)
            row = _trial_row(session, lease.search_id, trial_id)
            row.history = [*row.history[:epoch], metrics]
            row.epochs = len(row.history)
            if row.epochs > row.epochs_reached:
                row.epochs_reached, row.lost_leases = row.epochs, 0
            row.score, row.params, row.seconds = score, params, seconds
            return LeaseState(cancel_requested=cancel_requested)

    @retried
    def finish_trial(
        self,
        lease: SlotLease,
        trial_id: str,
        *,
        status: TrialStatus,
        score: float | None,
        seconds: float,
        error: str | None = None,
        stop_reason: str | None = None,
    ) -> None:
        """Close a trial as completed or failed; ``stop_reason`` says why it stopped before
        its last epoch (a pruner, the budget)."""
        with self._transaction(write=True) as session:
            _check_slot(session, lease)
            session.execute(
                update(SlotRow)
                .where(SlotRow.slot_id == lease.slot_id)
                .values(trial_id=None)
                .execution_options(synchronize_session=False)
            )
            row = _trial_row(session, lease.search_id, trial_id)
            row.status, row.score, row.seconds, row.error = status.value, score, seconds, error
            row.stop_reason = stop_reason
            row.finished_at = utcnow()

    @retried
    def list_trials(self, search_id: str) -> list[TrialRecord]:
        """Every trial of a search, in the order they started."""
        with self._transaction() as session:
            return _trials_of(session, [search_id]).get(search_id, [])

    # Models ---------------------------------------------------------------------------

    @retried
    def record_models(self, lease: Lease, models: Sequence[ExportedModel]) -> None:
        """Replace the exported models of a search."""
        with self._transaction(write=True) as session:
            _check_fence(session, lease)
            for old in session.scalars(
                select(ModelRow).where(ModelRow.search_id == lease.search_id)
            ):
                session.delete(old)
            session.flush()
            session.add_all(
                ModelRow(
                    search_id=lease.search_id,
                    rank=model.rank,
                    trial_id=model.trial_id,
                    score=model.score,
                    params=model.params,
                    formats=list(model.formats),
                    created_at=model.created_at,
                    test_accuracy=model.test_accuracy,
                )
                for model in models
            )

    @retried
    def list_models(self, search_id: str) -> list[ExportedModel]:
        """Exported models of a search, best first."""
        with self._transaction() as session:
            rows = session.scalars(
                select(ModelRow).where(ModelRow.search_id == search_id).order_by(ModelRow.rank)
            ).all()
            return [
                ExportedModel(
                    search_id=row.search_id,
                    rank=row.rank,
                    trial_id=row.trial_id,
                    score=row.score,
                    params=row.params,
                    formats=tuple(row.formats),
                    created_at=row.created_at,
                    test_accuracy=row.test_accuracy,
                )
                for row in rows
            ]

    # Workers --------------------------------------------------------------------------

    @retried
    def register_worker(
        self, worker_id: str, *, hostname: str, pid: int, backend: str, slots: int
    ) -> None:
        """Announce a worker process that runs up to ``slots`` trials at once."""
        now = utcnow()
        with self._transaction(write=True) as session:
            session.add(
                WorkerRow(
                    id=worker_id,
                    hostname=hostname,
                    pid=pid,
                    backend=backend,
                    started_at=now,
                    heartbeat_at=now,
                    slots=slots,
                )
            )

    @retried
    def worker_heartbeat(self, worker_id: str) -> None:
        """Note that a worker is alive."""
        with self._transaction(write=True) as session:
            session.execute(
                update(WorkerRow).where(WorkerRow.id == worker_id).values(heartbeat_at=utcnow())
            )

    @retried
    def worker_stopped(self, worker_id: str) -> None:
        """Note a clean worker exit."""
        with self._transaction(write=True) as session:
            session.execute(
                update(WorkerRow).where(WorkerRow.id == worker_id).values(stopped_at=utcnow())
            )

    @retried
    def list_workers(self) -> list[WorkerRecord]:
        """Every worker that ever registered, newest first, with the trials it runs now."""
        with self._transaction() as session:
            rows = session.scalars(select(WorkerRow).order_by(WorkerRow.started_at.desc())).all()
            running: dict[str, list[RunningTrial]] = {}
            for worker_id, search_id, trial_id in session.execute(
                select(SlotRow.worker_id, SlotRow.search_id, SlotRow.trial_id).order_by(
                    SlotRow.joined_at
                )
            ):
                running.setdefault(worker_id, []).append(RunningTrial(search_id, trial_id))
            return [
                WorkerRecord(
                    id=row.id,
                    hostname=row.hostname,
                    pid=row.pid,
                    backend=row.backend,
                    started_at=row.started_at,
                    heartbeat_at=row.heartbeat_at,
                    stopped_at=row.stopped_at,
                    slots=row.slots,
                    accelerator=row.accelerator,
                    current_trials=tuple(running.get(row.id, ())),
                )
                for row in rows
            ]

    # Tokens ---------------------------------------------------------------------------

    @retried
    def create_token(
        self, *, token_id: str, owner: str, token_hash: str, admin: bool
    ) -> TokenRecord:
        """Keep a new token; only the hash of its secret is stored."""
        row = TokenRow(id=token_id, owner=owner, hash=token_hash, admin=admin, created_at=utcnow())
        with self._transaction(write=True) as session:
            session.add(row)
            session.flush()
            return _token_record(row)

    @retried
    def get_active_token(self, token_id: str, token_hash: str) -> TokenRecord | None:
        """The unrevoked token ``token_id`` if ``token_hash`` is its hash, else None.

        The hashes are compared in constant time.
        """
        with self._transaction() as session:
            row = session.get(TokenRow, token_id)
            if row is None or row.revoked_at is not None:
                return None
            if not hmac.compare_digest(row.hash, token_hash):
                return None
            return _token_record(row)

    @retried
    def touch_tokens(self, uses: Mapping[str, datetime]) -> None:
        """Note when each token of ``uses`` (token id -> time) was last used."""
        with self._transaction(write=True) as session:
            for token_id, used_at in uses.items():
                session.execute(
                    update(TokenRow).where(TokenRow.id == token_id).values(last_used_at=used_at)
                )

    @retried
    def revoke_token(self, token_id: str) -> TokenRecord | None:
        """Revoke a token (again is a no-op); None when there is no such token."""
        with self._transaction(write=True) as session:
            row = session.get(TokenRow, token_id)
            if row is None:
                return None
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return _token_record(row)

    @retried
    def list_tokens(self) -> list[TokenRecord]:
        """Every token, revoked ones too, oldest first."""
        with self._transaction() as session:
            rows = session.scalars(select(TokenRow).order_by(TokenRow.created_at, TokenRow.id))
            return [_token_record(row) for row in rows]


_ENDED_BY_DEFAULT = {
    SearchStatus.SUCCEEDED: EndedBy.MAX_TRIALS,
    SearchStatus.FAILED: EndedBy.ERROR,
    SearchStatus.CANCELLED: EndedBy.CANCELLED,
}


def create_store(database_url: str, *, retry_seconds: float = 0.0) -> Store:
    """A store on a new engine for ``database_url``; ``retry_seconds`` rides out outages."""
    return Store(make_engine(database_url), retry_seconds=retry_seconds)


def _held_by(lease: Lease) -> tuple[Any, ...]:
    return (
        SearchRow.id == lease.search_id,
        SearchRow.worker_id == lease.worker_id,
        SearchRow.attempt == lease.attempt,
        SearchRow.status == SearchStatus.RUNNING.value,
    )


def _check_fence(session: Session, lease: Lease) -> bool:
    """Raise LeaseLostError unless ``lease`` still holds; return whether cancel was asked."""
    # The UPDATE takes the row lock, so a requeue cannot slip in before the write; and it is
    # the revision bump of every fenced write (a check before writing files bumps it too,
    # which only costs pollers one full answer).
    cancel_requested = session.execute(
        _revised(update(SearchRow))
        .where(*_held_by(lease))
        .returning(SearchRow.cancel_requested)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if cancel_requested is None:
        raise LeaseLostError(f"search {lease.search_id} attempt {lease.attempt} lost")
    return bool(cancel_requested)


def _held_row(session: Session, lease: Lease) -> SearchRow:
    """The leased search's row, once :func:`_check_fence` has seen the lease hold."""
    _check_fence(session, lease)
    row = session.get(SearchRow, lease.search_id)
    if row is None:  # deleted under the row lock: not possible while the lease holds
        raise LeaseLostError(f"search {lease.search_id} attempt {lease.attempt} lost")
    return row


def _slot_held_by(lease: SlotLease) -> tuple[Any, ...]:
    return (
        SlotRow.slot_id == lease.slot_id,
        SlotRow.search_id == lease.search_id,
        SlotRow.worker_id == lease.worker_id,
    )


def _slot_lost(lease: SlotLease) -> str:
    return f"slot {lease.slot_id} of search {lease.search_id} lost"


def _commit_without_flush(session: Session) -> None:
    """On PostgreSQL, let the transaction's commit return before its write-ahead log reaches
    the disk (a row locked FOR UPDATE alone makes a commit wait for that flush): a crash of
    the server may lose the transaction then, whole, as if it never ran. SQLite in WAL mode
    with ``synchronous=NORMAL`` never waits for the disk at a commit."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")


#: The oracle step's lock: the search's row while it runs, its ``trials_exhausted``.
_LOCK_RUNNING_SEARCH = (
    select(SearchRow.trials_exhausted)
    .where(SearchRow.id == bindparam("search_id"), SearchRow.status == SearchStatus.RUNNING.value)
    .with_for_update()
)
_LIVE_SLOT, _FAILED_TRIAL = "slot", "failed"
#: Rows (kind, id, error) of a search's slots (``_LIVE_SLOT``) and of its trials the store
#: failed (``_FAILED_TRIAL``, with their error), in one round trip.
_SLOTS_AND_FAILED_TRIALS = union_all(
    select(literal_column(f"'{_LIVE_SLOT}'"), SlotRow.slot_id, null()).where(
        SlotRow.search_id == bindparam("search_id")
    ),
    select(literal_column(f"'{_FAILED_TRIAL}'"), TrialRow.trial_id, TrialRow.error).where(
        TrialRow.search_id == bindparam("search_id"),
        TrialRow.status == TrialStatus.FAILED.value,
    ),
)


def _wants_slots(slots: Any) -> tuple[Any, ...]:
    """What a search that a worker may join is: queued or running, not cancelled, handing
    out trials, with fewer than its most ``slots`` (its slot count, as a subquery)."""
    return (
        SearchRow.status.in_([SearchStatus.QUEUED.value, SearchStatus.RUNNING.value]),
        SearchRow.cancel_requested.is_(False),
        SearchRow.trials_exhausted.is_(False),
        or_(SearchRow.max_parallel_trials.is_(None), slots < SearchRow.max_parallel_trials),
    )


def _slot_count(search_id: Any) -> Any:
    """How many slots the search ``search_id`` (a value or a column) holds, as a query."""
    return select(func.count(SlotRow.slot_id)).where(SlotRow.search_id == search_id)


def _check_slot(session: Session, lease: SlotLease) -> bool:
    """Raise LeaseLostError unless the slot's lease still holds; return whether cancel was
    asked. Like :func:`_check_fence`, it locks the search's row and bumps its revision."""
    cancel_requested = session.execute(
        _revised(update(SearchRow))
        .where(SearchRow.id == lease.search_id, SearchRow.status == SearchStatus.RUNNING.value)
        .returning(SearchRow.cancel_requested)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    held = session.scalar(select(SlotRow.slot_id).where(*_slot_held_by(lease)))
    if cancel_requested is None or held is None:
        raise LeaseLostError(_slot_lost(lease))
    return bool(cancel_requested)


def _vacate(session: Session, slot: SlotRow, *, lost: bool, max_attempts: int) -> None:
    """Delete ``slot``; the trial it left running is run again by another slot, unless it was
    ``lost`` once too often without progress. A search left with no slot and trials to hand
    out goes back to the queue."""
    search = session.get(SearchRow, slot.search_id)
    trial = (
        None if slot.trial_id is None else session.get(TrialRow, (slot.search_id, slot.trial_id))
    )
    if search is not None and trial is not None and trial.status == TrialStatus.RUNNING.value:
        trial.lost_leases += 1 if lost else 0
        if trial.lost_leases >= max_attempts:
            trial.status, trial.finished_at = TrialStatus.FAILED.value, utcnow()
            trial.error = (
                f"its worker stopped answering {trial.lost_leases} times in a row "
                "without finishing a new epoch"
            )
        else:
            trial.status = TrialStatus.INTERRUPTED.value
            search.trials_exhausted = False
    session.delete(slot)
    session.flush()
    if lost:
        _lose_data_step(session, slot.search_id, slot.slot_id, max_attempts)
    else:
        _give_back_data_step(session, slot.search_id, slot.slot_id)
    if (
        search is not None
        and search.status == SearchStatus.RUNNING.value
        and not (search.trials_exhausted or search.cancel_requested)
        and not session.scalar(_slot_count(search.id))
    ):
        search.status = SearchStatus.QUEUED.value


def _interrupt_running_trials(session: Session, search_id: str) -> None:
    session.execute(
        update(TrialRow)
        .where(TrialRow.search_id == search_id, TrialRow.status == TrialStatus.RUNNING.value)
        .values(status=TrialStatus.INTERRUPTED.value)
        .execution_options(synchronize_session=False)
    )


def _close(
    session: Session, row: SearchRow, status: SearchStatus, ended_by: EndedBy, error: str | None
) -> None:
    """End the search with ``status``, recording what it spent: wall-clock seconds of its runs
    (from its first start, less the idle time before extensions) and training seconds summed
    over its trials."""
    now = utcnow()
    row.status, row.error, row.ended_by = status.value, error, ended_by.value
    row.finished_at, row.lease_expires_at = now, None
    # Nobody prepares its data any more: an extension's first slot prepares it again, and
    # the workers of its run look again whether they can read the photos.
    unprepared = (DataStepState.PENDING.value, DataStepState.PREPARING.value)
    session.execute(
        update(DataStepRow)
        .where(DataStepRow.search_id == row.id, DataStepRow.state.in_(unprepared))
        .values(**_UNHELD, unreadable_by=None, unreadable_since=None)
        .execution_options(synchronize_session=False)
    )
    row.wall_seconds = (
        _wall_seconds_before_resuming(row) + (now - row.resumed_at).total_seconds()
        if row.resumed_at
        else None
    )
    row.training_seconds = session.scalar(
        select(func.coalesce(func.sum(TrialRow.seconds), 0.0)).where(TrialRow.search_id == row.id)
    )


def _lost_in_a_row(session: Session, search_id: str) -> int:
    """How many of the search's latest finishing attempts lost their lease."""
    outcomes = session.scalars(
        select(AttemptRow.outcome)
        .where(AttemptRow.search_id == search_id)
        .order_by(AttemptRow.attempt.desc())
    ).all()
    lost = 0
    for outcome in outcomes:
        if outcome != AttemptOutcome.LEASE_EXPIRED.value:
            break
        lost += 1
    return lost


def _revised(statement: Update) -> Update:
    """``statement``, an UPDATE of searches, also bumping their revision: the one place
    revisions change. In SQL, so concurrent writers each count (no read-modify-write)."""
    return statement.values(revision=SearchRow.revision + 1)


def _revise(session: Session, search_id: str) -> None:
    """Bump the revision of a search whose row or trials this transaction changes."""
    session.execute(
        _revised(update(SearchRow))
        .where(SearchRow.id == search_id)
        .execution_options(synchronize_session="fetch")
    )


#: What an extension's record holds of what the store keeps of it (not its request's key).
_EXTENSION_FIELDS = {field.name for field in fields(Extension)}


def _latest_extension(row: SearchRow) -> dict[str, Any]:
    """The latest extension of the search as stored (empty if it was never extended)."""
    return row.extensions[-1] if row.extensions else {}


def _wall_seconds_before_resuming(row: SearchRow) -> float:
    return _latest_extension(row).get("wall_seconds", 0.0)


def _keyed_extension(
    extensions: list[dict[str, Any]], idempotency_key: str, request_hash: str | None
) -> dict[str, Any] | None:
    """The extension ``idempotency_key`` made, if any; a conflict if it was made by a
    different request."""
    earlier = next(
        (entry for entry in extensions if entry.get("idempotency_key") == idempotency_key), None
    )
    if earlier is not None and earlier.get("request_hash") != request_hash:
        raise IdempotencyConflictError(
            "this Idempotency-Key was already used with a different request"
        )
    return earlier


def _extension_record(entry: dict[str, Any]) -> Extension:
    kept = {name: value for name, value in entry.items() if name in _EXTENSION_FIELDS}
    return Extension(**kept | {"extended_at": datetime.fromisoformat(entry["extended_at"])})


def _older_than(key: SearchKey) -> Any:
    """Searches after ``key`` in the newest-first order (spelled out, for the index)."""
    return or_(
        SearchRow.created_at < key.created_at,
        and_(SearchRow.created_at == key.created_at, SearchRow.id < key.id),
    )


def _queued_count(session: Session, owner: str) -> int:
    # On PostgreSQL, locking the owner's token rows serializes that owner's submissions, so
    # two at once cannot both see room for one more; SQLite writers are serialized already.
    session.execute(select(TokenRow.id).where(TokenRow.owner == owner).with_for_update())
    queued = select(func.count()).where(
        SearchRow.owner == owner, SearchRow.status == SearchStatus.QUEUED.value
    )
    return session.scalar(queued) or 0


def _token_record(row: TokenRow) -> TokenRecord:
    return TokenRecord(
        id=row.id,
        owner=row.owner,
        admin=row.admin,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


def _image_size(spec: dict[str, Any]) -> Any:
    return spec.get("dataset", {}).get("image_size")


def _trial_row(session: Session, search_id: str, trial_id: str) -> TrialRow:
    row = session.get(TrialRow, (search_id, trial_id))
    if row is None:
        raise KeyError(f"trial {trial_id} of search {search_id} was never started")
    return row


def _trials_of(
    session: Session, search_ids: Sequence[str], *, with_history: bool = True
) -> dict[str, list[TrialRecord]]:
    """The trials of each search, oldest first; without ``with_history`` their per-epoch
    history, most of a trial's bytes, is not read (and left empty)."""
    if not search_ids:
        return {}
    query = select(TrialRow).where(TrialRow.search_id.in_(search_ids))
    if not with_history:
        query = query.options(defer(TrialRow.history, raiseload=True))
    rows = session.scalars(query.order_by(TrialRow.started_at, TrialRow.trial_id)).all()
    # A trial's exported model, if any, carries its accuracy on the search's test photos.
    tested = {
        (search_id, trial_id): accuracy
        for search_id, trial_id, accuracy in session.execute(
            select(ModelRow.search_id, ModelRow.trial_id, ModelRow.test_accuracy).where(
                ModelRow.search_id.in_(search_ids), ModelRow.test_accuracy.is_not(None)
            )
        )
    }
    grouped: dict[str, list[TrialRecord]] = {}
    for row in rows:
        test_accuracy = tested.get((row.search_id, row.trial_id))
        epochs = row.history if with_history else []
        grouped.setdefault(row.search_id, []).append(_trial_record(row, epochs, test_accuracy))
    return grouped


def _end_attempt(
    session: Session, search: SearchRow, outcome: AttemptOutcome, error: str | None
) -> None:
    """Close the search's current attempt; trials it left running are interrupted."""
    attempt = session.get(AttemptRow, (search.id, search.attempt))
    if attempt is not None:
        attempt.outcome, attempt.error, attempt.ended_at = outcome.value, error, utcnow()
    _interrupt_running_trials(session, search.id)


def _attempts_of(session: Session, search_ids: Sequence[str]) -> dict[str, list[AttemptRecord]]:
    if not search_ids:
        return {}
    rows = session.scalars(
        select(AttemptRow).where(AttemptRow.search_id.in_(search_ids)).order_by(AttemptRow.attempt)
    ).all()
    grouped: dict[str, list[AttemptRecord]] = {}
    for row in rows:
        grouped.setdefault(row.search_id, []).append(
            AttemptRecord(
                attempt=row.attempt,
                worker_id=row.worker_id,
                started_at=row.started_at,
                ended_at=row.ended_at,
                outcome=AttemptOutcome(row.outcome),
                error=row.error,
            )
        )
    return grouped


def _search_records(session: Session, rows: Sequence[SearchRow]) -> list[SearchRecord]:
    """Records of ``rows`` with their progress. Of their trials only the best one's history
    is read: it is the only one a search record shows."""
    ids = [row.id for row in rows]
    trials = _trials_of(session, ids, with_history=False)
    attempts = _attempts_of(session, ids)
    best = {row.id: best_completed(trials.get(row.id, []), _objective(row)) for row in rows}
    histories = _histories(session, [trial.key for trial in best.values() if trial is not None])
    return [
        _search_record(
            row,
            trials.get(row.id, []),
            None
            if (top := best[row.id]) is None
            else replace(
                top,
                history=_history(histories[top.key]),
                resumed_at_epochs=_resumed_at(histories[top.key]),
            ),
            attempts.get(row.id, []),
        )
        for row in rows
    ]


def _histories(
    session: Session, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], list[dict[str, float]]]:
    """The per-epoch history of each trial in ``keys`` (search id, trial id), as stored."""
    if not keys:
        return {}
    found = session.execute(
        select(TrialRow.search_id, TrialRow.trial_id, TrialRow.history).where(
            tuple_(TrialRow.search_id, TrialRow.trial_id).in_(keys)
        )
    )
    return {(search_id, trial_id): history for search_id, trial_id, history in found}


#: The store's mark on the last epoch a run resumed after (from its checkpoint), in a stored
#: history entry: records show it as ``resumed_at_epochs``, never as a metric.
_RESUMED_AFTER = "_resumed_after"


def _history(epochs: Sequence[Mapping[str, float]]) -> tuple[dict[str, float], ...]:
    """A stored history's metrics, epoch by epoch."""
    return tuple(
        {name: value for name, value in epoch.items() if name != _RESUMED_AFTER} for epoch in epochs
    )


def _resumed_at(epochs: Sequence[Mapping[str, float]]) -> tuple[int, ...]:
    """The epochs (from 0) at which runs of the trial resumed from a checkpoint."""
    return tuple(number + 1 for number, epoch in enumerate(epochs) if _RESUMED_AFTER in epoch)


def _objective(row: SearchRow) -> str:
    return row.spec.get("objective", "val_accuracy")


def _trial_record(
    row: TrialRow, epochs: Sequence[Mapping[str, float]], test_accuracy: float | None
) -> TrialRecord:
    """``row`` as a record, with ``epochs`` as its stored history (empty: left unread)."""
    return TrialRecord(
        search_id=row.search_id,
        trial_id=row.trial_id,
        status=TrialStatus(row.status),
        hyperparameters=dict(row.hyperparameters),
        score=row.score,
        params=row.params,
        epochs=row.epochs,
        seconds=row.seconds,
        history=_history(epochs),
        resumed_at_epochs=_resumed_at(epochs),
        error=row.error,
        started_at=row.started_at,
        finished_at=row.finished_at,
        test_accuracy=test_accuracy,
        stop_reason=row.stop_reason,
        worker_id=row.worker_id,
        hostname=row.hostname,
        accelerator=row.accelerator,
        lost_leases=row.lost_leases,
    )


def _search_record(
    row: SearchRow,
    trials: list[TrialRecord],
    best_trial: TrialRecord | None,
    attempts: list[AttemptRecord],
) -> SearchRecord:
    done = sum(trial.status in {TrialStatus.COMPLETED, TrialStatus.FAILED} for trial in trials)
    return SearchRecord(
        id=row.id,
        owner=row.owner,
        status=SearchStatus(row.status),
        spec=dict(row.spec),
        trials_planned=row.trials_planned,
        trials_done=done,
        best_trial=best_trial,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        worker_id=row.worker_id,
        attempt=row.attempt,
        lease_expires_at=row.lease_expires_at,
        cancel_requested=row.cancel_requested,
        accelerator=row.accelerator,
        precision=row.precision,
        dataset_info=row.dataset_info,
        error=row.error,
        attempts=tuple(attempts),
        revision=row.revision,
        ended_by=row.ended_by,
        wall_seconds=row.wall_seconds,
        training_seconds=row.training_seconds,
        final_training=tuple(FinalTraining(**training) for training in row.final_training or ()),
        resumed_at=row.resumed_at,
        extensions=tuple(_extension_record(entry) for entry in row.extensions or ()),
    )


# Data steps ---------------------------------------------------------------------------------

#: What a data step nobody holds has of a holder.
_UNHELD = {
    "state": DataStepState.PENDING.value,
    "holder": None,
    "worker_id": None,
    "lease_expires_at": None,
}


def _new_data_step(search_id: str) -> DataStepRow:
    return DataStepRow(
        search_id=search_id,
        state=DataStepState.PENDING.value,
        token=0,
        lost_leases=0,
        images_decoded=0,
        images_reached=0,
    )


def _data_held_by(lease: DataLease) -> tuple[Any, ...]:
    return (
        DataStepRow.search_id == lease.search_id,
        DataStepRow.holder == lease.holder,
        DataStepRow.token == lease.token,
        DataStepRow.state == DataStepState.PREPARING.value,
    )


def _data_step_lost(lease: DataLease) -> str:
    return f"the data step of search {lease.search_id} (claim {lease.token}) lost"


def _holding(search_id: str, holder: str) -> tuple[Any, ...]:
    """The data step of ``search_id`` while ``holder`` prepares it."""
    return (
        DataStepRow.search_id == search_id,
        DataStepRow.holder == holder,
        DataStepRow.state == DataStepState.PREPARING.value,
    )


def _give_back_data_step(session: Session, search_id: str, holder: str) -> None:
    """Put the data step ``holder`` holds, if it does, back to pending, counting nothing."""
    session.execute(
        update(DataStepRow)
        .where(*_holding(search_id, holder))
        .values(**_UNHELD)
        .execution_options(synchronize_session=False)
    )


def _lose_data_step(session: Session, search_id: str, holder: str, max_attempts: int) -> None:
    """The holder of the search's data step was lost, if it held it: count the lost lease."""
    step = session.scalars(
        select(DataStepRow).where(*_holding(search_id, holder)).with_for_update()
    ).one_or_none()
    if step is not None:
        _count_lost_data_lease(session, step, max_attempts)


def _count_lost_data_lease(session: Session, step: DataStepRow, max_attempts: int) -> None:
    """Put a data step whose holder was lost back to pending; after ``max_attempts`` lost in a
    row without more photos decoded, the step and its search fail."""
    step.lost_leases += 1
    for name, value in _UNHELD.items():
        setattr(step, name, value)
    if step.lost_leases < max_attempts:
        return
    error = (
        f"the worker preparing the search's data stopped answering {step.lost_leases} times "
        "in a row without decoding more photos"
    )
    step.state, step.error = DataStepState.FAILED.value, error
    search = session.get(SearchRow, step.search_id)
    if search is not None and not SearchStatus(search.status).terminal:
        _fail_running(session, search, error)


def _fail_data_step(session: Session, search_id: str, holder: str, error: str | None) -> None:
    """Fail the data step the slot ``holder`` holds, if it does, with the error that fails
    its search."""
    session.execute(
        update(DataStepRow)
        .where(*_holding(search_id, holder))
        .values(state=DataStepState.FAILED.value, error=error, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )


def _reap_data_steps(session: Session, now: datetime, max_attempts: int) -> list[str]:
    """Count the lost lease of every data step whose holder stopped renewing it; the searches
    concerned."""
    expired = session.scalars(
        select(DataStepRow.search_id).where(
            DataStepRow.state == DataStepState.PREPARING.value,
            DataStepRow.lease_expires_at < now,
        )
    ).all()
    for search_id in expired:
        # The search's row first, as every writer of a search locks it.
        _revise(session, search_id)
        step = session.scalars(
            select(DataStepRow)
            .where(
                DataStepRow.search_id == search_id,
                DataStepRow.state == DataStepState.PREPARING.value,
                DataStepRow.lease_expires_at < now,
            )
            .with_for_update(skip_locked=True)
        ).one_or_none()
        if step is not None:
            _count_lost_data_lease(session, step, max_attempts)
    return list(expired)


def _fail_running(session: Session, row: SearchRow, error: str) -> None:
    """Fail a search that has not ended: its slots lose their leases, its trials stop."""
    session.execute(
        delete(SlotRow)
        .where(SlotRow.search_id == row.id)
        .execution_options(synchronize_session=False)
    )
    _interrupt_running_trials(session, row.id)
    _close(session, row, SearchStatus.FAILED, EndedBy.ERROR, error)


def _data_step_record(row: DataStepRow) -> DataStepRecord:
    return DataStepRecord(
        search_id=row.search_id,
        state=DataStepState(row.state),
        holder=row.holder,
        worker_id=row.worker_id,
        token=row.token,
        lease_expires_at=row.lease_expires_at,
        lost_leases=row.lost_leases,
        images_decoded=row.images_decoded,
        images_reached=row.images_reached,
        info=dict(row.info or {}),
        error=row.error,
        prepared_at=row.prepared_at,
        unreadable_by=tuple(row.unreadable_by or ()),
        unreadable_since=row.unreadable_since,
    )
