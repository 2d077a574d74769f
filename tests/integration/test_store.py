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
    SearchStatus,
    Store,
    TrialStatus,
    create_store,
)

SPEC = {"objective": "val_accuracy"}


def queue(store: Store, count: int, spec: dict | None = None) -> list[str]:
    return [
        store.create_search(spec or SPEC, trials_planned=2, owner="alice").search.id
        for _ in range(count)
    ]


def test_claims_oldest_first_once(store: Store) -> None:
    first, second = queue(store, 2)
    lease = store.claim_next("w1", 30)
    assert lease == Lease(search_id=first, worker_id="w1", attempt=1)
    assert store.claim_next("w2", 30) == Lease(search_id=second, worker_id="w2", attempt=1)
    assert store.claim_next("w3", 30) is None
    search = store.get_search(first)
    assert search is not None
    assert search.status == SearchStatus.RUNNING
    assert search.worker_id == "w1"
    assert search.started_at is not None and search.lease_expires_at is not None


def test_list_is_newest_first_and_paginated(store: Store) -> None:
    ids = queue(store, 5)
    page = store.list_searches(limit=2, offset=1, owner=None)
    assert page.total == 5
    assert [search.id for search in page.items] == list(reversed(ids))[1:3]


def test_trials_progress_and_best(store: Store) -> None:
    (search_id,) = queue(store, 1)
    lease = store.claim_next("w1", 30)
    assert lease is not None
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
    assert trials["2"].status == TrialStatus.RUNNING and trials["2"].history == ()
    # The search record reads only its best trial's history, whole.
    assert search.best_trial == trials["1"] and search.best_trial.history == (
        {"val_accuracy": 0.7, "loss": 1.0},
    )
    (listed,) = store.list_searches(limit=10, offset=0, owner=None).items
    assert listed.best_trial == trials["1"]


def test_restarted_trial_starts_clean(store: Store) -> None:
    queue(store, 1)
    lease = store.claim_next("w1", 30)
    assert lease is not None
    store.start_trial(lease, "0", {"a": 1})
    store.record_epoch(
        lease, "0", epoch=0, metrics={"val_accuracy": 0.5}, score=0.5, params=1, seconds=1
    )
    store.start_trial(lease, "0", {"a": 1})
    (trial,) = store.list_trials(lease.search_id)
    assert trial.history == () and trial.score is None and trial.status == TrialStatus.RUNNING


def test_cancel_queued_and_running(store: Store) -> None:
    queued, running = queue(store, 2)
    cancelled = store.request_cancel(queued)
    assert cancelled is not None and cancelled.status == SearchStatus.CANCELLED
    lease = store.claim_next("w1", 30)
    assert lease is not None and lease.search_id == running, "a cancelled search never starts"
    asked = store.request_cancel(running)
    assert asked is not None and asked.status == SearchStatus.RUNNING and asked.cancel_requested
    assert store.renew_lease(lease, 30).cancel_requested
    store.start_trial(lease, "0", {})
    state = store.record_epoch(lease, "0", epoch=0, metrics={}, score=None, params=1, seconds=1)
    assert state.cancel_requested
    assert store.request_cancel("0" * 32) is None


def test_expired_lease_is_requeued_and_fenced(store: Store) -> None:
    (search_id,) = queue(store, 1)
    stale = store.claim_next("w1", 0.0)
    assert stale is not None
    time.sleep(0.01)
    assert store.requeue_expired(max_attempts=3) == [search_id]
    with pytest.raises(LeaseLostError):
        store.renew_lease(stale, 30)
    with pytest.raises(LeaseLostError):
        store.start_trial(stale, "0", {})
    fresh = store.claim_next("w2", 30)
    assert fresh == Lease(search_id=search_id, worker_id="w2", attempt=2)
    store.start_trial(fresh, "0", {})
    with pytest.raises(LeaseLostError):
        store.finish_search(stale, SearchStatus.SUCCEEDED)
    store.finish_search(fresh, SearchStatus.SUCCEEDED)
    search = store.get_search(search_id)
    assert search is not None and search.status == SearchStatus.SUCCEEDED
    assert search.attempt == 2 and search.finished_at is not None


def test_out_of_attempts_fails(store: Store) -> None:
    (search_id,) = queue(store, 1)
    for _ in range(2):
        assert store.claim_next("w", 0.0) is not None
        time.sleep(0.01)
        store.requeue_expired(max_attempts=2)
    search = store.get_search(search_id)
    assert search is not None and search.status == SearchStatus.FAILED
    assert "2 attempts" in (search.error or "")


def test_release_gives_search_back(store: Store) -> None:
    (search_id,) = queue(store, 1)
    lease = store.claim_next("w1", 30)
    assert lease is not None
    store.release(lease)
    again = store.claim_next("w2", 30)
    assert again == Lease(search_id=search_id, worker_id="w2", attempt=2)


def test_models_are_replaced_and_ranked(store: Store) -> None:
    (search_id,) = queue(store, 1)
    lease = store.claim_next("w1", 30)
    assert lease is not None

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
    lease = store.claim_next("w1", 30)
    assert lease is not None
    for trial_id, score in (("0", 0.5), ("1", 0.8), ("2", 0.6)):
        store.start_trial(lease, trial_id, {})
        store.finish_trial(lease, trial_id, status=TrialStatus.COMPLETED, score=score, seconds=1.0)
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
    lease = store.claim_next("w1", 30)
    assert lease is not None
    with pytest.raises(ValueError, match="terminal"):
        store.finish_search(lease, SearchStatus.RUNNING)


def test_workers_are_listed(store: Store) -> None:
    store.register_worker("w1", hostname="h", pid=1, backend="tensorflow")
    store.worker_heartbeat("w1", "abc")
    (worker,) = store.list_workers()
    assert worker.current_search_id == "abc" and worker.stopped_at is None
    store.worker_stopped("w1")
    assert store.list_workers()[0].stopped_at is not None


def _claim_all(
    database_url: str, worker_id: str, start: Any, results: multiprocessing.Queue
) -> None:
    store = create_store(database_url)
    store.ping()
    start.wait(60)  # every process connected: now they race
    claimed = []
    while (lease := store.claim_next(worker_id, 60)) is not None:
        claimed.append(lease.search_id)
    store.dispose()
    results.put(claimed)


def test_racing_workers_claim_each_search_exactly_once(store: Store, database_url: str) -> None:
    """8 processes race for 200 queued searches with the production claim statement."""
    ids = queue(store, 200)
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()
    start = context.Barrier(8)
    workers = [
        context.Process(target=_claim_all, args=(database_url, f"w{n}", start, results))
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


def test_attempt_history_and_interrupted_trials(store: Store) -> None:
    (search_id,) = queue(store, 1)
    first = store.claim_next("w1", 0.0)
    assert first is not None
    store.start_trial(first, "0", {})
    time.sleep(0.01)
    store.requeue_expired(max_attempts=3)
    (trial,) = store.list_trials(search_id)
    assert trial.status == TrialStatus.INTERRUPTED
    second = store.claim_next("w2", 30)
    assert second is not None
    store.release(second)
    third = store.claim_next("w3", 30)
    assert third is not None
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
    lease = store.claim_next("w1", 30)
    assert lease is not None
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
