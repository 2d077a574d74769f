"""The worker's decisions without processes: supervising, settling an exit, claiming.

The supervise and exit decisions are plain functions driven by made-up observations; the
claim and settle steps run the real ``Worker`` on a migrated SQLite file, with no slot or
finishing process. tests/e2e/test_faults.py and test_distributed.py cover the same paths with
real processes, in minutes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nas.core.settings import Settings
from nas.core.store import (
    AttemptOutcome,
    AttemptRecord,
    Lease,
    SearchRecord,
    SearchStatus,
    SlotLease,
    Store,
    TrialStatus,
    create_store,
    migrate,
)
from nas.worker.loop import Worker
from nas.worker.process import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LEASE_LOST,
    EXIT_OK,
)
from nas.worker.supervision import (
    CANCEL_POLL_SECONDS,
    LOST_LEASE_EXIT_SECONDS,
    STOP_TIMEOUT_SECONDS,
    Action,
    CheckCancel,
    Close,
    Decision,
    GiveBack,
    Heartbeat,
    Kill,
    LeaveAlone,
    LeaveSlot,
    Step,
    SupervisionState,
    Terminate,
    after_cancel_check,
    after_exit,
    after_lease_lost,
    after_slot_exit,
    after_slot_lease_lost,
    next_actions,
)

SETTINGS = Settings(heartbeat_seconds=10.0, cancel_grace_seconds=5.0)
LEASE = Lease(search_id="s1", worker_id="me", attempt=2)
NOW = 1000.0
#: Neither the heartbeat nor the cancel check is due.
QUIET = SupervisionState(next_heartbeat_at=NOW + 1, next_cancel_check_at=NOW + 1)

STOP = Terminate("must stop with the worker")
GRACE_OVER = Terminate("did not stop at an epoch end")
SECOND_SIGNAL = Kill("must stop at once (second stop request)")
IGNORED_SIGTERM = Kill("ignored SIGTERM")
HANGS = Kill("ended but its process hangs")
LOST = Kill("lost its lease")


# Supervising a running process ------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "stop_requests", "now", "actions"),
    [
        pytest.param(SupervisionState(), 0, NOW, [Heartbeat(), CheckCancel()], id="first tick"),
        pytest.param(QUIET, 0, NOW, [], id="nothing due"),
        pytest.param(replace(QUIET, next_heartbeat_at=NOW), 0, NOW, [Heartbeat()], id="beat due"),
        pytest.param(
            replace(QUIET, next_cancel_check_at=NOW), 0, NOW, [CheckCancel()], id="check due"
        ),
        pytest.param(
            replace(QUIET, next_cancel_check_at=NOW, cancel_seen_at=NOW - 1),
            0,
            NOW,
            [],
            id="cancel seen: no more checks",
        ),
        pytest.param(
            replace(QUIET, next_cancel_check_at=NOW, interrupts_on_cancel=False),
            0,
            NOW,
            [],
            id="finishing step: stops itself on a cancel",
        ),
        pytest.param(QUIET, 1, NOW, [STOP], id="stop requested"),
        pytest.param(
            SupervisionState(), 1, NOW, [STOP, Heartbeat(), CheckCancel()], id="stop: beats on"
        ),
        pytest.param(replace(QUIET, terminated_at=NOW - 1), 1, NOW, [], id="stop: once only"),
        pytest.param(SupervisionState(), 2, NOW, [SECOND_SIGNAL], id="second signal kills"),
        pytest.param(replace(QUIET, terminated_at=NOW - 1), 3, NOW, [SECOND_SIGNAL], id="third"),
        pytest.param(replace(QUIET, closed=True), 2, NOW, [], id="closed: await exit"),
        pytest.param(replace(QUIET, lease_lost=True), 2, NOW, [], id="lost: await exit"),
        pytest.param(
            replace(QUIET, closed=True, exit_awaited_since=NOW - STOP_TIMEOUT_SECONDS),
            0,
            NOW,
            [],
            id="closed: within timeout",
        ),
        pytest.param(
            replace(QUIET, closed=True, exit_awaited_since=NOW - STOP_TIMEOUT_SECONDS - 0.1),
            0,
            NOW,
            [HANGS],
            id="closed: hangs",
        ),
        pytest.param(
            replace(QUIET, lease_lost=True, exit_awaited_since=NOW - LOST_LEASE_EXIT_SECONDS - 0.1),
            0,
            NOW,
            [LOST],
            id="lost: does not exit",
        ),
        pytest.param(
            replace(QUIET, cancel_seen_at=NOW - 4.9), 0, NOW, [], id="cancel: within grace"
        ),
        pytest.param(
            replace(QUIET, cancel_seen_at=NOW - 5), 0, NOW, [GRACE_OVER], id="cancel: grace over"
        ),
        pytest.param(
            replace(QUIET, cancel_seen_at=NOW - 9, terminated_at=NOW - 4),
            0,
            NOW,
            [],
            id="cancel: terminated already",
        ),
        pytest.param(
            replace(QUIET, terminated_at=NOW - STOP_TIMEOUT_SECONDS),
            1,
            NOW,
            [],
            id="sigterm: within timeout",
        ),
        pytest.param(
            replace(QUIET, terminated_at=NOW - STOP_TIMEOUT_SECONDS - 0.1),
            1,
            NOW,
            [IGNORED_SIGTERM],
            id="sigterm: timed out",
        ),
        pytest.param(
            replace(QUIET, cancel_seen_at=NOW - 40, terminated_at=NOW - 31),
            0,
            NOW,
            [IGNORED_SIGTERM],
            id="cancel sigterm: timed out",
        ),
    ],
)
def test_next_actions(
    state: SupervisionState, stop_requests: int, now: float, actions: list[Action]
) -> None:
    assert list(next_actions(state, stop_requests, now, SETTINGS).actions) == actions


def test_a_process_that_only_has_to_exit_is_waited_for_without_blocking() -> None:
    step = next_actions(replace(QUIET, lease_lost=True), 0, NOW, SETTINGS)
    assert step == Step(replace(QUIET, lease_lost=True, exit_awaited_since=NOW))


def test_next_actions_schedules_the_next_checks() -> None:
    state = next_actions(SupervisionState(), 0, NOW, SETTINGS).state
    assert state == SupervisionState(
        next_heartbeat_at=NOW + SETTINGS.heartbeat_seconds,
        next_cancel_check_at=NOW + CANCEL_POLL_SECONDS,
    )
    assert next_actions(state, 0, NOW + CANCEL_POLL_SECONDS - 0.01, SETTINGS).actions == ()
    assert next_actions(state, 0, NOW + CANCEL_POLL_SECONDS, SETTINGS).actions == (CheckCancel(),)


@pytest.mark.parametrize(
    ("stop_requests", "state", "terminated_at"),
    [
        (1, QUIET, NOW),
        (0, replace(QUIET, cancel_seen_at=NOW - 5), NOW),
        (1, replace(QUIET, terminated_at=NOW - 1), NOW - 1),
    ],
)
def test_a_terminate_is_remembered_once(
    stop_requests: int, state: SupervisionState, terminated_at: float
) -> None:
    assert next_actions(state, stop_requests, NOW, SETTINGS).state.terminated_at == terminated_at


@pytest.mark.parametrize(
    ("requested", "grace", "step"),
    [
        (False, 5.0, Step(QUIET)),
        (True, 5.0, Step(replace(QUIET, cancel_seen_at=NOW))),
        (True, 0.0, Step(replace(QUIET, cancel_seen_at=NOW, terminated_at=NOW), (GRACE_OVER,))),
    ],
    ids=["not cancelled", "cancelled: grace starts", "cancelled, no grace: interrupt at once"],
)
def test_after_cancel_check(requested: bool, grace: float, step: Step) -> None:
    settings = SETTINGS.model_copy(update={"cancel_grace_seconds": grace})
    assert after_cancel_check(QUIET, requested, NOW, settings) == step


def test_a_cancel_after_a_stop_does_not_terminate_twice() -> None:
    stopped = replace(QUIET, terminated_at=NOW)
    settings = SETTINGS.model_copy(update={"cancel_grace_seconds": 0.0})
    assert after_cancel_check(stopped, True, NOW, settings).actions == ()


def search_record(
    status: SearchStatus = SearchStatus.RUNNING,
    *,
    worker_id: str | None = "me",
    attempt: int = 2,
    last_attempt_by: str = "me",
) -> SearchRecord:
    """A search as the store returns it, at ``attempt`` and held by ``worker_id``."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    earlier = tuple(
        AttemptRecord(n, "other", start, start, AttemptOutcome.LEASE_EXPIRED, None)
        for n in range(1, attempt)
    )
    last = AttemptRecord(attempt, last_attempt_by, start, None, AttemptOutcome.RUNNING, None)
    return SearchRecord(
        id=LEASE.search_id,
        owner="alice",
        status=status,
        spec={},
        trials_planned=3,
        trials_done=1,
        best_trial=None,
        created_at=start,
        started_at=start,
        finished_at=None,
        worker_id=worker_id,
        attempt=attempt,
        lease_expires_at=None,
        cancel_requested=False,
        accelerator=None,
        precision=None,
        dataset_info=None,
        error=None,
        attempts=(*earlier, last),
    )


@pytest.mark.parametrize(
    ("search", "closed"),
    [
        (search_record(SearchStatus.SUCCEEDED, worker_id=None), True),
        (search_record(SearchStatus.FAILED, worker_id=None), True),
        (search_record(SearchStatus.CANCELLED, worker_id=None), True),
        (search_record(worker_id="thief", attempt=3, last_attempt_by="thief"), False),
        (search_record(SearchStatus.QUEUED, worker_id=None), False),
        (search_record(SearchStatus.SUCCEEDED, worker_id=None, attempt=3), False),
        (search_record(SearchStatus.SUCCEEDED, worker_id=None, last_attempt_by="thief"), False),
        (None, False),
    ],
    ids=[
        "succeeded by its process",
        "failed by its process",
        "cancelled by its process",
        "taken over",
        "requeued",
        "closed by a later attempt",
        "closed by another worker",
        "gone",
    ],
)
def test_after_lease_lost(search: SearchRecord | None, closed: bool) -> None:
    state = after_lease_lost(QUIET, search, LEASE)
    assert (state.closed, state.lease_lost) == (closed, not closed)


# After the process exited -------------------------------------------------------------------

RUNNING = search_record()
CANCEL_REQUESTED = replace(RUNNING, cancel_requested=True)
CANCEL_SEEN = replace(QUIET, cancel_seen_at=NOW)


@pytest.mark.parametrize(
    ("exitcode", "state", "search", "stopping", "decision"),
    [
        pytest.param(EXIT_OK, QUIET, RUNNING, False, LeaveAlone(), id="ok"),
        pytest.param(EXIT_OK, CANCEL_SEEN, RUNNING, True, LeaveAlone(), id="ok, cancel, stop"),
        pytest.param(EXIT_LEASE_LOST, QUIET, RUNNING, False, LeaveAlone(), id="lease lost"),
        pytest.param(
            -9, replace(QUIET, lease_lost=True), RUNNING, False, LeaveAlone(), id="seen lost"
        ),
        pytest.param(EXIT_FAILED, QUIET, None, False, LeaveAlone(), id="search gone"),
        pytest.param(
            EXIT_FAILED,
            QUIET,
            search_record(SearchStatus.FAILED, worker_id=None),
            False,
            LeaveAlone(),
            id="failed: closed by its process",
        ),
        pytest.param(
            EXIT_INTERRUPTED,
            CANCEL_SEEN,
            search_record(SearchStatus.CANCELLED, worker_id=None),
            False,
            LeaveAlone(),
            id="cancelled by its process",
        ),
        pytest.param(
            -9,
            QUIET,
            search_record(worker_id="thief", attempt=3, last_attempt_by="thief"),
            True,
            LeaveAlone(),
            id="taken over",
        ),
        pytest.param(
            EXIT_INTERRUPTED,
            CANCEL_SEEN,
            RUNNING,
            False,
            Close(SearchStatus.CANCELLED),
            id="cancel: interrupted",
        ),
        pytest.param(
            -15, CANCEL_SEEN, RUNNING, True, Close(SearchStatus.CANCELLED), id="cancel: sigterm"
        ),
        pytest.param(
            -9, CANCEL_SEEN, RUNNING, True, Close(SearchStatus.CANCELLED), id="cancel: killed"
        ),
        pytest.param(
            -9,
            replace(QUIET, interrupts_on_cancel=False),
            CANCEL_REQUESTED,
            False,
            Close(SearchStatus.CANCELLED),
            id="cancel, not watched: killed",
        ),
        pytest.param(EXIT_INTERRUPTED, QUIET, RUNNING, False, GiveBack(), id="interrupted"),
        pytest.param(EXIT_INTERRUPTED, QUIET, RUNNING, True, GiveBack(), id="stop: interrupted"),
        pytest.param(-9, QUIET, RUNNING, True, GiveBack(), id="stop: killed"),
        pytest.param(EXIT_FAILED, QUIET, RUNNING, True, GiveBack(), id="stop: failed"),
        pytest.param(
            EXIT_FAILED,
            QUIET,
            RUNNING,
            False,
            Close(SearchStatus.FAILED, "the finishing process died (exit 1)"),
            id="failed without closing",
        ),
        pytest.param(
            -9,
            QUIET,
            RUNNING,
            False,
            Close(SearchStatus.FAILED, "the finishing process died (exit signal 9)"),
            id="killed",
        ),
        pytest.param(
            -11,
            replace(QUIET, terminated_at=NOW),
            RUNNING,
            False,
            Close(SearchStatus.FAILED, "the finishing process died (exit signal 11)"),
            id="crashed",
        ),
        pytest.param(
            None,
            QUIET,
            RUNNING,
            False,
            Close(SearchStatus.FAILED, "the finishing process died (exit None)"),
            id="never ran",
        ),
    ],
)
def test_after_exit(
    exitcode: int | None,
    state: SupervisionState,
    search: SearchRecord | None,
    stopping: bool,
    decision: Decision,
) -> None:
    assert after_exit(exitcode, state, search, LEASE, stopping=stopping) == decision


@pytest.mark.parametrize(
    ("exitcode", "state", "decision"),
    [
        pytest.param(EXIT_OK, QUIET, LeaveSlot(died=False), id="no more trials"),
        pytest.param(EXIT_CANCELLED, QUIET, LeaveSlot(died=False), id="cancelled"),
        pytest.param(EXIT_INTERRUPTED, QUIET, LeaveSlot(died=False), id="interrupted"),
        pytest.param(-9, QUIET, LeaveSlot(died=True), id="killed"),
        pytest.param(EXIT_FAILED, QUIET, LeaveSlot(died=True), id="failed"),
        pytest.param(None, QUIET, LeaveSlot(died=True), id="never ran"),
        pytest.param(EXIT_LEASE_LOST, QUIET, LeaveAlone(), id="lease lost"),
        pytest.param(-9, replace(QUIET, lease_lost=True), LeaveAlone(), id="seen lost"),
        pytest.param(EXIT_FAILED, replace(QUIET, closed=True), LeaveAlone(), id="closed"),
    ],
)
def test_after_slot_exit(
    exitcode: int | None, state: SupervisionState, decision: LeaveSlot | LeaveAlone
) -> None:
    assert after_slot_exit(exitcode, state) == decision


@pytest.mark.parametrize(
    ("search", "closed"),
    [
        (search_record(SearchStatus.FAILED, worker_id=None), True),
        (None, True),
        (search_record(), False),
        (search_record(SearchStatus.QUEUED, worker_id=None), False),
    ],
    ids=["failed by a slot", "gone", "taken back", "taken back, requeued"],
)
def test_after_slot_lease_lost(search: SearchRecord | None, closed: bool) -> None:
    state = after_slot_lease_lost(QUIET, search)
    assert (state.closed, state.lease_lost) == (closed, not closed)


# Claiming and settling on a real store, without a slot or finishing process -----------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A migrated SQLite file."""
    store = create_store(f"sqlite:///{tmp_path / 'nas.db'}")
    migrate(store.engine)
    yield store
    store.dispose()


def worker(store: Store, name: str, **settings: float) -> Worker:
    return Worker(Settings(**settings), store, name)


def queue(store: Store, count: int, **tuner: int) -> list[str]:
    return [
        store.create_search({"tuner": tuner}, trials_planned=2, owner="alice").search.id
        for _ in range(count)
    ]


def outcomes(store: Store, search_id: str) -> list[tuple[str, AttemptOutcome]]:
    search = store.get_search(search_id)
    assert search is not None
    return [(attempt.worker_id, attempt.outcome) for attempt in search.attempts]


def slot(store: Store, me: Worker) -> SlotLease:
    lease = me.claim()
    assert isinstance(lease, SlotLease)
    return lease


def status(store: Store, search_id: str) -> SearchStatus:
    search = store.get_search(search_id)
    assert search is not None
    return search.status


def exhaust(store: Store, lease: SlotLease, me: Worker) -> None:
    """The slot's oracle hands out no more trials, and the slot leaves."""
    store.mark_trials_exhausted(lease)
    me.settle(lease, EXIT_OK, QUIET)


def test_slots_go_to_the_search_with_fewest_then_the_oldest(store: Store) -> None:
    first, second = queue(store, 2)
    me = worker(store, "me")
    assert [slot(store, me).search_id for _ in range(4)] == [first, second, first, second]
    assert status(store, first) == SearchStatus.RUNNING


def test_a_search_takes_no_more_slots_than_its_max_parallel_trials(store: Store) -> None:
    (search_id,) = queue(store, 1, max_parallel_trials=2)
    me = worker(store, "me")
    assert [slot(store, me).search_id for _ in range(2)] == [search_id, search_id]
    assert me.claim() is None


def test_the_finishing_step_waits_for_the_last_slot(store: Store) -> None:
    (search_id,) = queue(store, 1)
    me = worker(store, "me")
    one, two = slot(store, me), slot(store, me)
    exhaust(store, one, me)
    assert me.claim() is None, "no slot for a search that hands out no more trials"
    me.settle(two, EXIT_OK, QUIET)
    assert me.claim() == Lease(search_id, "me", 1)
    assert status(store, search_id) == SearchStatus.RUNNING


def test_an_interrupted_slot_gives_its_trial_back_and_the_search_requeues(store: Store) -> None:
    (search_id,) = queue(store, 1)
    me = worker(store, "me")
    lease = slot(store, me)
    store.start_trial(lease, "0", {})
    me.request_stop()
    me.settle(lease, EXIT_INTERRUPTED, QUIET)
    assert status(store, search_id) == SearchStatus.QUEUED
    (trial,) = store.list_trials(search_id)
    assert (trial.status, trial.lost_leases) == (TrialStatus.INTERRUPTED, 0)
    assert worker(store, "next").claim() is not None


def test_a_slot_that_died_counts_against_its_trial(store: Store) -> None:
    (search_id,) = queue(store, 1)
    me = worker(store, "me", max_attempts=2)
    for lost in (1, 2):
        lease = slot(store, me)
        store.start_trial(lease, "0", {})
        me.settle(lease, -9, QUIET)
        (trial,) = store.list_trials(search_id)
        assert trial.lost_leases == lost
    assert trial.status == TrialStatus.FAILED
    assert (
        trial.error == "its worker stopped answering 2 times in a row without finishing a new epoch"
    )
    assert status(store, search_id) == SearchStatus.QUEUED, "the search goes on without it"


def test_an_expired_slot_is_taken_back_and_its_trial_runs_elsewhere(store: Store) -> None:
    (search_id,) = queue(store, 1, max_parallel_trials=1)
    gone = slot(store, worker(store, "gone", lease_seconds=0.001))
    store.start_trial(gone, "0", {})
    time.sleep(0.01)
    assert store.reap_expired(max_attempts=3) == [search_id]
    taken = slot(store, worker(store, "me"))
    assert taken.search_id == search_id
    (trial,) = store.list_trials(search_id)
    assert (trial.status, trial.lost_leases) == (TrialStatus.INTERRUPTED, 1)


@pytest.mark.parametrize(
    ("exitcode", "state", "stopping", "status", "outcome", "error"),
    [
        (EXIT_INTERRUPTED, QUIET, True, SearchStatus.RUNNING, AttemptOutcome.RELEASED, None),
        (-9, QUIET, True, SearchStatus.RUNNING, AttemptOutcome.RELEASED, None),
        (-15, CANCEL_SEEN, False, SearchStatus.CANCELLED, AttemptOutcome.CANCELLED, None),
        (
            -9,
            QUIET,
            False,
            SearchStatus.FAILED,
            AttemptOutcome.FAILED,
            "the finishing process died (exit signal 9)",
        ),
        (EXIT_OK, QUIET, False, SearchStatus.RUNNING, AttemptOutcome.RUNNING, None),
    ],
    ids=["give back", "give back killed", "cancel", "fail", "leave"],
)
def test_settle_writes_the_finishing_decision(
    store: Store,
    exitcode: int,
    state: SupervisionState,
    stopping: bool,
    status: SearchStatus,
    outcome: AttemptOutcome,
    error: str | None,
) -> None:
    (search_id,) = queue(store, 1)
    me = worker(store, "me")
    exhaust(store, slot(store, me), me)
    lease = me.claim()
    assert isinstance(lease, Lease)
    if stopping:
        me.request_stop()
    me.settle(lease, exitcode, state)
    search = store.get_search(search_id)
    assert search is not None
    assert (search.status, search.error) == (status, error)
    assert outcomes(store, search_id) == [("me", outcome)]


def test_a_finishing_step_given_back_is_taken_again_as_its_next_attempt(store: Store) -> None:
    (search_id,) = queue(store, 1)
    me = worker(store, "me")
    exhaust(store, slot(store, me), me)
    lease = me.claim()
    assert isinstance(lease, Lease)
    me.settle(lease, EXIT_INTERRUPTED, QUIET)
    assert worker(store, "next").claim() == Lease(search_id, "next", 2)


def test_a_finishing_step_lost_too_often_fails_the_search(store: Store) -> None:
    (search_id,) = queue(store, 1)
    me = worker(store, "me")
    exhaust(store, slot(store, me), me)
    for _ in range(2):
        assert worker(store, "gone", lease_seconds=0.001).claim() is not None
        time.sleep(0.01)
        store.reap_expired(max_attempts=2)
    search = store.get_search(search_id)
    assert search is not None and search.status == SearchStatus.FAILED
    assert search.error == "the worker finishing the search stopped answering 2 times"


def test_settle_leaves_a_search_its_process_closed(store: Store) -> None:
    (search_id,) = queue(store, 1)
    me = worker(store, "me")
    exhaust(store, slot(store, me), me)
    lease = me.claim()
    assert isinstance(lease, Lease)
    store.finish_search(lease, SearchStatus.SUCCEEDED)
    me.settle(lease, EXIT_FAILED, QUIET)
    assert status(store, search_id) == SearchStatus.SUCCEEDED


def test_settle_leaves_a_finishing_step_another_worker_took_over(store: Store) -> None:
    (search_id,) = queue(store, 1)
    me = worker(store, "me", lease_seconds=0.001)
    exhaust(store, slot(store, me), me)
    lease = me.claim()
    assert isinstance(lease, Lease)
    time.sleep(0.01)
    store.reap_expired(max_attempts=3)
    assert worker(store, "thief").claim() == Lease(search_id, "thief", 2)
    me.request_stop()
    me.settle(lease, EXIT_INTERRUPTED, QUIET)
    search = store.get_search(search_id)
    assert search is not None
    assert (search.status, search.worker_id, search.attempt) == (SearchStatus.RUNNING, "thief", 2)
