"""The storage layer on SQLite and PostgreSQL: queue semantics, fencing, trials, models."""

from __future__ import annotations

import multiprocessing
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from nas.core.store import (
    ExportedModel,
    IdempotencyConflictError,
    Lease,
    LeaseLostError,
    OracleContext,
    OracleOutcome,
    RunningTrial,
    SearchStatus,
    SlotLease,
    Store,
    TrialStatus,
    create_store,
)
from tests.support.leases import finish_trials, join
from tests.support.statements import statements

SPEC = {"objective": "val_accuracy"}


def queue(store: Store, count: int, spec: dict | None = None) -> list[str]:
    return [
        store.create_search(spec or SPEC, trials_planned=2, owner="alice").search.id
        for _ in range(count)
    ]


def test_slots_go_to_the_search_with_fewest_then_the_oldest(store: Store) -> None:
    first, second = queue(store, 2)
    lease = join(store, "w1")
    assert lease.search_id == first and lease.worker_id == "w1"
    assert join(store, "w2").search_id == second
    assert join(store, "w3").search_id == first
    search = store.get_search(first)
    assert search is not None
    assert search.status == SearchStatus.RUNNING and search.started_at is not None
    assert search.worker_id is None, "no finishing step yet"


def test_a_search_with_max_parallel_trials_takes_no_more_slots(store: Store) -> None:
    (search_id,) = queue(store, 1, {**SPEC, "tuner": {"max_parallel_trials": 2}})
    assert {join(store, "w1").search_id, join(store, "w2").search_id} == {search_id}
    assert store.join_next("w3", hostname="h", lease_seconds=30) is None


def test_list_is_newest_first_and_paginated(store: Store) -> None:
    ids = queue(store, 5)
    page = store.list_searches(limit=2, offset=1, owner=None)
    assert page.total == 5
    assert [search.id for search in page.items] == list(reversed(ids))[1:3]


def test_trials_progress_and_best(store: Store) -> None:
    (search_id,) = queue(store, 1)
    lease = join(store)
    for trial_id, scores in (("0", [0.4, 0.6]), ("1", [0.7])):
        store.start_trial(lease, trial_id, {"filters_0": 32})
        for epoch, score in enumerate(scores):
            state = store.record_epoch(
                lease,
                trial_id,
                epoch=epoch,
                metrics={"val_accuracy": score, "loss": 1.0 - epoch / 10},
                score=score,
                params=1234,
                seconds=epoch + 1.0,
            )
            assert not state.cancel_requested
        store.finish_trial(
            lease, trial_id, status=TrialStatus.COMPLETED, score=max(scores), seconds=3.0
        )
    store.start_trial(lease, "2", {"filters_0": 64})
    search = store.get_search(search_id)
    assert search is not None
    assert search.trials_done == 2
    assert search.best_trial is not None and search.best_trial.trial_id == "1"
    trials = {trial.trial_id: trial for trial in store.list_trials(search_id)}
    assert trials["0"].history == (
        {"val_accuracy": 0.4, "loss": 1.0},
        {"val_accuracy": 0.6, "loss": 0.9},
    )
    assert trials["0"].epochs == 2 and trials["0"].params == 1234
    assert (trials["0"].worker_id, trials["0"].hostname) == ("w1", "test-host")
    assert trials["2"].status == TrialStatus.RUNNING and trials["2"].history == ()
    # The search record reads only its best trial's history, whole.
    assert search.best_trial == trials["1"] and search.best_trial.history == (
        {"val_accuracy": 0.7, "loss": 1.0},
    )
    (listed,) = store.list_searches(limit=10, offset=0, owner=None).items
    assert listed.best_trial == trials["1"]


def record_epochs(store: Store, lease: SlotLease, trial_id: str, scores: list[float]) -> None:
    for epoch, score in enumerate(scores):
        store.record_epoch(
            lease,
            trial_id,
            epoch=epoch,
            metrics={"val_accuracy": score},
            score=max(scores[: epoch + 1]),
            params=7,
            seconds=epoch + 1.5,
        )


def test_a_restarted_trial_without_a_checkpoint_starts_clean(store: Store) -> None:
    queue(store, 1)
    lease = join(store)
    store.start_trial(lease, "0", {"a": 1})
    record_epochs(store, lease, "0", [0.5])
    store.start_trial(lease, "0", {"a": 1})
    kept = store.resume_trial(lease, "0", epochs=0)
    (trial,) = store.list_trials(lease.search_id)
    assert trial == kept
    assert trial.history == () and trial.score is None and trial.status == TrialStatus.RUNNING
    assert (trial.epochs, trial.seconds, trial.params) == (0, 0.0, None)
    assert trial.resumed_at_epochs == ()


def test_a_trial_resumed_from_its_checkpoint_keeps_the_epochs_it_holds(store: Store) -> None:
    (search_id,) = queue(store, 1)
    first = join(store, "w1", lease_seconds=0.0)
    assert first.search_id == search_id
    store.start_trial(first, "0", {"a": 1})
    record_epochs(store, first, "0", [0.5, 0.8, 0.6, 0.9])
    time.sleep(0.01)
    store.reap_expired(max_attempts=3)  # its worker died after epoch 3 and before its backup
    second = join(store, "w2")
    store.start_trial(second, "0", {"a": 1})
    (waiting,) = store.list_trials(search_id)
    assert len(waiting.history) == 4, "an earlier run's epochs stay until the trial trains"

    kept = store.resume_trial(second, "0", epochs=3)

    assert kept.history == ({"val_accuracy": 0.5}, {"val_accuracy": 0.8}, {"val_accuracy": 0.6})
    assert (kept.epochs, kept.score, kept.params) == (3, 0.8, 7), "epoch 3's 0.9 is dropped"
    assert kept.seconds == 4.5, "the seconds its runs trained"
    assert kept.resumed_at_epochs == (3,) and kept.worker_id == "w2"
    store.record_epoch(
        second, "0", epoch=3, metrics={"val_accuracy": 0.7}, score=0.8, params=7, seconds=6.0
    )
    store.resume_trial(second, "0", epochs=4)  # resumed again, one epoch further
    store.record_epoch(
        second, "0", epoch=4, metrics={"val_accuracy": 0.95}, score=0.95, params=7, seconds=7.0
    )
    store.finish_trial(second, "0", status=TrialStatus.COMPLETED, score=0.95, seconds=7.5)
    (trial,) = store.list_trials(search_id)
    assert [epoch["val_accuracy"] for epoch in trial.history] == [0.5, 0.8, 0.6, 0.7, 0.95]
    assert trial.resumed_at_epochs == (3, 4)
    assert trial.lost_leases == 0, "its new epochs are progress"
    search = store.get_search(search_id)
    assert search is not None and search.best_trial == trial


def test_cancel_queued_and_running(store: Store) -> None:
    queued, running = queue(store, 2)
    cancelled = store.request_cancel(queued)
    assert cancelled is not None and cancelled.status == SearchStatus.CANCELLED
    lease = join(store)
    assert lease.search_id == running, "a cancelled search never starts"
    asked = store.request_cancel(running)
    assert asked is not None and asked.status == SearchStatus.RUNNING and asked.cancel_requested
    assert store.renew_slot(lease, 30).cancel_requested
    store.start_trial(lease, "0", {})
    state = store.record_epoch(lease, "0", epoch=0, metrics={}, score=None, params=1, seconds=1)
    assert state.cancel_requested
    assert store.join_next("w2", hostname="h", lease_seconds=30) is None, "no new slot"
    assert store.claim_finishing("w2", 30) is None, "not while a slot runs"
    store.leave_slot(lease, died=False, max_attempts=3)
    assert store.claim_finishing("w2", 30) == Lease(running, "w2", 1)
    assert store.request_cancel("0" * 32) is None


def test_an_expired_slot_is_taken_back_and_fenced(store: Store) -> None:
    (search_id,) = queue(store, 1)
    stale = join(store, "w1", lease_seconds=0.0)
    store.start_trial(stale, "0", {})
    time.sleep(0.01)
    assert store.reap_expired(max_attempts=3) == [search_id]
    for write in (
        lambda: store.renew_slot(stale, 30),
        lambda: store.start_trial(stale, "1", {}),
        lambda: store.resume_trial(stale, "0", epochs=0),
        lambda: store.finish_trial(
            stale, "0", status=TrialStatus.COMPLETED, score=1.0, seconds=1.0
        ),
        lambda: store.oracle_step(stale, lambda _context: OracleOutcome(None)),
    ):
        with pytest.raises(LeaseLostError):
            write()
    (trial,) = store.list_trials(search_id)
    assert (trial.status, trial.lost_leases) == (TrialStatus.INTERRUPTED, 1)
    search = store.get_search(search_id)
    assert search is not None and search.status == SearchStatus.QUEUED, "waits for a slot"
    fresh = join(store, "w2")
    store.start_trial(fresh, "0", {})
    store.finish_trial(fresh, "0", status=TrialStatus.COMPLETED, score=1.0, seconds=1.0)
    (trial,) = store.list_trials(search_id)
    assert (trial.status, trial.worker_id) == (TrialStatus.COMPLETED, "w2")


def test_a_slot_that_left_takes_no_oracle_step_while_its_search_runs_on(store: Store) -> None:
    (search_id,) = queue(store, 1)
    left, staying = join(store, "w1"), join(store, "w2")
    store.leave_slot(left, died=False, max_attempts=3)

    with pytest.raises(LeaseLostError):
        store.oracle_step(left, lambda _context: OracleOutcome(None))

    assert store.oracle_step(staying, lambda context: OracleOutcome(context.live_slots)) == {
        staying.slot_id
    }
    search = store.get_search(search_id)
    assert search is not None and search.status == SearchStatus.RUNNING


def test_an_oracle_step_locks_and_reads_in_two_statements_and_waits_for_no_flush(
    store: Store,
) -> None:
    queue(store, 1)
    lease = join(store, "w1")

    with statements(store) as seen:
        store.oracle_step(lease, lambda _context: OracleOutcome(None))

    postgres = store.engine.dialect.name == "postgresql"
    # SQLite's write lock is taken by the BEGIN IMMEDIATE the engine sends itself.
    first = ["SET LOCAL synchronous_commit TO OFF"] if postgres else ["BEGIN IMMEDIATE"]
    assert seen[: len(first)] == first
    locked, read = seen[len(first) :]
    assert "FOR UPDATE" in locked or not postgres
    assert "UNION ALL" in read


def lose_slot(store: Store, search_id: str, trial_id: str, *, epochs: int = 0) -> None:
    """A worker joins, runs ``trial_id`` for ``epochs`` epochs and stops answering."""
    lease = join(store, "doomed", lease_seconds=0.0)
    assert lease.search_id == search_id
    store.start_trial(lease, trial_id, {})
    for epoch in range(epochs):
        store.record_epoch(
            lease, trial_id, epoch=epoch, metrics={}, score=None, params=1, seconds=1
        )
    time.sleep(0.01)
    store.reap_expired(max_attempts=3)


def test_a_trial_fails_after_max_attempts_lost_leases_without_a_new_epoch(store: Store) -> None:
    (search_id,) = queue(store, 1)
    lease = join(store, "steady")
    store.start_trial(lease, "0", {})
    store.finish_trial(lease, "0", status=TrialStatus.COMPLETED, score=0.5, seconds=1.0)
    store.leave_slot(lease, died=False, max_attempts=3)
    # Each rerun of trial 1 gets one epoch further before its worker dies: progress, every
    # time. Under the old rule (three lost leases fail the search) the search was dead here.
    for epochs in (1, 2, 3, 4):
        lose_slot(store, search_id, "1", epochs=epochs)
    trials = {trial.trial_id: trial for trial in store.list_trials(search_id)}
    assert (trials["1"].status, trials["1"].lost_leases) == (TrialStatus.INTERRUPTED, 1)
    # Two more lost, neither past its 4 epochs: three lost since its last new epoch.
    for epochs in (2, 4):
        lose_slot(store, search_id, "1", epochs=epochs)
    trials = {trial.trial_id: trial for trial in store.list_trials(search_id)}
    assert trials["1"].status == TrialStatus.FAILED
    assert trials["1"].error == (
        "its worker stopped answering 3 times in a row without finishing a new epoch"
    )
    search = store.get_search(search_id)
    assert search is not None and search.status == SearchStatus.QUEUED, "the search goes on"
    assert trials["0"].status == TrialStatus.COMPLETED
    lease = join(store, "steady")
    store.start_trial(lease, "2", {})
    store.finish_trial(lease, "2", status=TrialStatus.COMPLETED, score=0.7, seconds=1.0)
    store.finish_search(finish_trials(store, lease), SearchStatus.SUCCEEDED)
    search = store.get_search(search_id)
    assert search is not None and search.status == SearchStatus.SUCCEEDED


def test_the_oracle_step_sees_the_live_slots_and_the_failed_trials(store: Store) -> None:
    (search_id,) = queue(store, 1)
    alive, doomed = join(store, "w1"), join(store, "w2", lease_seconds=0.0)
    store.start_trial(doomed, "0", {})
    time.sleep(0.01)
    store.reap_expired(max_attempts=1)
    seen: list[OracleContext] = []

    def step(context: OracleContext) -> OracleOutcome[str]:
        seen.append(context)
        return OracleOutcome("value", trials_exhausted=True)

    assert store.oracle_step(alive, step) == "value"
    assert seen == [
        OracleContext(
            live_slots=frozenset({alive.slot_id}),
            failed_trials={
                "0": "its worker stopped answering 1 times in a row without finishing a new epoch"
            },
        )
    ]
    assert store.join_next("w3", hostname="h", lease_seconds=30) is None, "no more trials"
    store.oracle_step(alive, lambda _context: OracleOutcome(None, trials_exhausted=False))
    assert join(store, "w3").search_id == search_id


def test_an_oracle_step_that_says_nothing_of_the_trials_left_keeps_what_the_store_knows(
    store: Store,
) -> None:
    # The last slots' end_trial steps after the budget or the oracle said "no more": the
    # search must not take slots again.
    queue(store, 1)
    ending, other = join(store, "w1"), join(store, "w2")
    store.mark_trials_exhausted(other)
    store.oracle_step(ending, lambda _context: OracleOutcome("ended"))
    assert store.join_next("w3", hostname="h", lease_seconds=30) is None, "no more trials"


def test_a_slot_fails_the_search_and_the_other_slots_lose_their_leases(store: Store) -> None:
    (search_id,) = queue(store, 1)
    first, second = join(store, "w1"), join(store, "w2")
    store.start_trial(second, "0", {})
    store.fail_search(first, "DatasetError: no photos")
    search = store.get_search(search_id)
    assert search is not None and search.status == SearchStatus.FAILED
    assert search.error == "DatasetError: no photos" and search.ended_by == "error"
    with pytest.raises(LeaseLostError):
        store.renew_slot(second, 30)
    assert store.list_trials(search_id)[0].status == TrialStatus.INTERRUPTED


def test_an_expired_finishing_step_is_taken_again_and_fenced(store: Store) -> None:
    (search_id,) = queue(store, 1)
    stale = finish_trials(store, join(store, "w1"), lease_seconds=0.0)
    time.sleep(0.01)
    assert store.reap_expired(max_attempts=3) == [search_id]
    with pytest.raises(LeaseLostError):
        store.renew_lease(stale, 30)
    fresh = store.claim_finishing("w2", 30)
    assert fresh == Lease(search_id=search_id, worker_id="w2", attempt=2)
    with pytest.raises(LeaseLostError):
        store.finish_search(stale, SearchStatus.SUCCEEDED)
    store.finish_search(fresh, SearchStatus.SUCCEEDED)
    search = store.get_search(search_id)
    assert search is not None and search.status == SearchStatus.SUCCEEDED
    assert search.attempt == 2 and search.finished_at is not None


def test_a_finishing_step_out_of_attempts_fails(store: Store) -> None:
    (search_id,) = queue(store, 1)
    slot = join(store, "w")
    store.mark_trials_exhausted(slot)
    store.leave_slot(slot, died=False, max_attempts=3)
    for _ in range(2):
        assert store.claim_finishing("w", 0.0) is not None
        time.sleep(0.01)
        store.reap_expired(max_attempts=2)
    search = store.get_search(search_id)
    assert search is not None and search.status == SearchStatus.FAILED
    assert search.error == "the worker finishing the search stopped answering 2 times"


def test_release_gives_the_finishing_step_back(store: Store) -> None:
    (search_id,) = queue(store, 1)
    lease = finish_trials(store, join(store, "w1"))
    store.release(lease)
    again = store.claim_finishing("w2", 30)
    assert again == Lease(search_id=search_id, worker_id="w2", attempt=2)


def test_models_are_replaced_and_ranked(store: Store) -> None:
    (search_id,) = queue(store, 1)
    lease = finish_trials(store, join(store))

    def model(rank: int, trial_id: str) -> ExportedModel:
        return ExportedModel(
            search_id=search_id,
            rank=rank,
            trial_id=trial_id,
            score=1.0 / rank,
            params=10 * rank,
            formats=("savedmodel", "keras"),
            created_at=datetime.now(UTC),
        )

    store.record_models(lease, [model(2, "b"), model(1, "a")])
    store.record_models(lease, [model(1, "c")])
    assert [(m.rank, m.trial_id, m.formats) for m in store.list_models(search_id)] == [
        (1, "c", ("savedmodel", "keras"))
    ]


def test_test_accuracy_of_exported_models_shows_on_their_trials(store: Store) -> None:
    (search_id,) = queue(store, 1)
    slot = join(store)
    for trial_id, score in (("0", 0.5), ("1", 0.8), ("2", 0.6)):
        store.start_trial(slot, trial_id, {})
        store.finish_trial(slot, trial_id, status=TrialStatus.COMPLETED, score=score, seconds=1.0)
    lease = finish_trials(store, slot)
    exported = [
        ExportedModel(
            search_id=search_id,
            rank=rank,
            trial_id=trial_id,
            score=score,
            params=10,
            formats=("keras",),
            created_at=datetime.now(UTC),
            test_accuracy=accuracy,
        )
        for rank, trial_id, score, accuracy in ((1, "1", 0.8, 0.75), (2, "2", 0.6, 0.5))
    ]
    store.record_models(lease, exported)

    assert [m.test_accuracy for m in store.list_models(search_id)] == [0.75, 0.5]
    trials = {trial.trial_id: trial.test_accuracy for trial in store.list_trials(search_id)}
    assert trials == {"0": None, "1": 0.75, "2": 0.5}
    search = store.get_search(search_id)
    assert search is not None and search.best_trial is not None
    assert (search.best_trial.trial_id, search.best_trial.test_accuracy) == ("1", 0.75)


def test_finish_requires_terminal_status(store: Store) -> None:
    queue(store, 1)
    lease = finish_trials(store, join(store))
    with pytest.raises(ValueError, match="terminal"):
        store.finish_search(lease, SearchStatus.RUNNING)


def test_workers_are_listed_with_their_slots_and_trials(store: Store) -> None:
    (search_id,) = queue(store, 1)
    store.register_worker("w1", hostname="h", pid=1, backend="tensorflow", slots=2)
    store.worker_heartbeat("w1")
    first, _second = join(store, "w1"), join(store, "w1")
    gpu = {"platform": "gpu", "replicas": 1}
    store.record_run_context(first, accelerator=gpu, precision="float32", dataset_info={})
    store.start_trial(first, "0", {})
    (worker,) = store.list_workers()
    assert (worker.slots, worker.accelerator, worker.stopped_at) == (2, gpu, None)
    assert worker.current_trials == (RunningTrial(search_id, "0"), RunningTrial(search_id, None))
    (trial,) = store.list_trials(search_id)
    assert (trial.worker_id, trial.hostname, trial.accelerator) == ("w1", "test-host", gpu)
    store.worker_stopped("w1")
    assert store.list_workers()[0].stopped_at is not None


def _join_all(
    database_url: str, worker_id: str, start: Any, results: multiprocessing.Queue
) -> None:
    store = create_store(database_url)
    store.ping()
    start.wait(60)  # every process connected: now they race
    joined = []
    while (lease := store.join_next(worker_id, hostname="h", lease_seconds=60)) is not None:
        joined.append(lease.search_id)
    store.dispose()
    results.put(joined)


def test_racing_workers_fill_each_slot_exactly_once(store: Store, database_url: str) -> None:
    """8 processes race for the one slot of each of 200 searches with the production join."""
    ids = queue(store, 200, {**SPEC, "tuner": {"max_parallel_trials": 1}})
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()
    start = context.Barrier(8)
    workers = [
        context.Process(target=_join_all, args=(database_url, f"w{n}", start, results))
        for n in range(8)
    ]
    for process in workers:
        process.start()
    per_worker = [results.get(timeout=120) for _ in workers]
    for process in workers:
        process.join(timeout=30)
        assert process.exitcode == 0
    claimed = [search_id for batch in per_worker for search_id in batch]
    assert sorted(claimed) == sorted(ids)
    assert sum(bool(batch) for batch in per_worker) > 1, "the workers did not really race"
    assert all(
        search.status == SearchStatus.RUNNING
        for search in store.list_searches(limit=100, offset=0, owner=None).items
    )


def test_finishing_attempt_history(store: Store) -> None:
    (search_id,) = queue(store, 1)
    first = finish_trials(store, join(store, "w1"), lease_seconds=0.0)
    time.sleep(0.01)
    store.reap_expired(max_attempts=3)
    second = store.claim_finishing("w2", 30)
    assert second is not None
    store.release(second)
    third = store.claim_finishing("w3", 30)
    assert third is not None and first.attempt == 1
    store.finish_search(third, SearchStatus.FAILED, error="boom")
    search = store.get_search(search_id)
    assert search is not None
    assert [(a.attempt, a.worker_id, a.outcome.value, a.error) for a in search.attempts] == [
        (1, "w1", "lease_expired", None),
        (2, "w2", "released", None),
        (3, "w3", "failed", "boom"),
    ]
    assert all(attempt.ended_at is not None for attempt in search.attempts)


def test_epoch_writes_are_idempotent(store: Store) -> None:
    queue(store, 1)
    lease = join(store)
    store.start_trial(lease, "0", {})
    for epoch, value in ((0, 0.1), (1, 0.2), (1, 0.3)):
        store.record_epoch(
            lease,
            "0",
            epoch=epoch,
            metrics={"val_accuracy": value},
            score=value,
            params=1,
            seconds=1,
        )
    (trial,) = store.list_trials(lease.search_id)
    assert trial.history == ({"val_accuracy": 0.1}, {"val_accuracy": 0.3}) and trial.epochs == 2


def test_idempotent_create(store: Store) -> None:
    first = store.create_search(SPEC, 2, owner="alice", idempotency_key="k1", request_hash="h1")
    again = store.create_search(SPEC, 2, owner="alice", idempotency_key="k1", request_hash="h1")
    assert first.created and not again.created and again.search.id == first.search.id
    with pytest.raises(IdempotencyConflictError):
        store.create_search(SPEC, 2, owner="alice", idempotency_key="k1", request_hash="h2")
    other = store.create_search(SPEC, 2, owner="alice", idempotency_key="k2", request_hash="h1")
    assert other.created and other.search.id != first.search.id
    assert store.list_searches(limit=10, offset=0, owner=None).total == 2
