"""A search's revision: every store write to the search, its trials or its models bumps it,
in the write's own transaction; reads and writes of other things leave it alone."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from nas.core.store import (
    ExportedModel,
    Extension,
    FinalTraining,
    Lease,
    LeaseLostError,
    SearchStatus,
    Store,
    TrialStatus,
)

SPEC = {"objective": "val_accuracy"}

#: What each write needs the search to be in: "queued", "running" (with a lease), "trial"
#: (running, with trial "0" started), "expired" (running, its lease run out) or "ended".
Write = Callable[[Store, Lease], object]
SEARCH_WRITES: dict[str, tuple[str, Write]] = {
    "request_cancel": ("queued", lambda store, lease: store.request_cancel(lease.search_id)),
    "claim_next": ("queued", lambda store, _lease: store.claim_next("w2", 30)),
    "extend_search": (
        "ended",
        lambda store, lease: store.extend_search(
            lease.search_id,
            revision=revision(store, lease.search_id),
            spec=SPEC,
            trials_planned=3,
            extension=Extension(
                extended_at=datetime.now(UTC),
                max_trials=1,
                seconds=None,
                ended_as="succeeded",
                ended_by="max_trials",
                wall_seconds=1.0,
                budget_spent=0.0,
                attempts=1,
            ),
        ),
    ),
    "release": ("running", lambda store, lease: store.release(lease)),
    "requeue_expired": ("expired", lambda store, _lease: store.requeue_expired(max_attempts=3)),
    "record_run_context": (
        "running",
        lambda store, lease: store.record_run_context(
            lease, accelerator={"platform": "cpu"}, precision="float32", dataset_info={}
        ),
    ),
    "finish_search": (
        "running",
        lambda store, lease: store.finish_search(lease, SearchStatus.SUCCEEDED),
    ),
    "start_trial": ("running", lambda store, lease: store.start_trial(lease, "1", {"u": 8})),
    "record_epoch": (
        "trial",
        lambda store, lease: store.record_epoch(
            lease, "0", epoch=0, metrics={"val_accuracy": 0.5}, score=0.5, params=10, seconds=1
        ),
    ),
    "finish_trial": (
        "trial",
        lambda store, lease: store.finish_trial(
            lease, "0", status=TrialStatus.COMPLETED, score=0.5, seconds=2
        ),
    ),
    "record_models": (
        "trial",
        lambda store, lease: store.record_models(
            lease,
            [
                ExportedModel(
                    search_id=lease.search_id,
                    rank=1,
                    trial_id="0",
                    score=0.5,
                    params=10,
                    formats=("keras",),
                    created_at=datetime.now(UTC),
                )
            ],
        ),
    ),
    "record_final_training": (
        "trial",
        lambda store, lease: store.record_final_training(
            lease,
            [
                FinalTraining(
                    trial_id="0", rank=1, epochs=3, images=40, seconds=9.5, test_accuracy=0.5
                )
            ],
        ),
    ),
    # Not a write, but it locks the row as the fenced writes do, with the same statement.
    "check_lease": ("running", lambda store, lease: store.check_lease(lease)),
}

#: Public methods that write no search, trial or model, or nothing any answer shows.
NOT_SEARCH_WRITES = {
    "ping",
    "dispose",
    "find_submission",
    "find_extension",
    "get_search",
    "get_revision",
    "is_cancel_requested",
    "list_searches",
    "list_trials",
    "list_models",
    "warm_start_configurations",
    # It writes only the lease's expiry, which no answer shows: bumping it would make every
    # heartbeat cost each poller a full answer.
    "renew_lease",
    "register_worker",
    "worker_heartbeat",
    "worker_stopped",
    "list_workers",
    "create_token",
    "get_active_token",
    "touch_tokens",
    "revoke_token",
    "list_tokens",
    # It makes the search, at revision 0 (checked below).
    "create_search",
}


def revision(store: Store, search_id: str) -> int:
    found = store.get_revision(search_id)
    assert found is not None
    return found.revision


def prepare(store: Store, state: str) -> Lease:
    """A search in ``state``; its lease (a made-up one for a queued search)."""
    search_id = store.create_search(SPEC, trials_planned=2, owner="alice").search.id
    if state == "queued":
        return Lease(search_id=search_id, worker_id="none", attempt=0)
    lease = store.claim_next("w1", 0.0 if state == "expired" else 30)
    assert lease is not None and lease.search_id == search_id
    if state == "expired":
        time.sleep(0.01)
    if state == "trial":
        store.start_trial(lease, "0", {"u": 4})
    if state == "ended":
        store.finish_search(lease, SearchStatus.SUCCEEDED)
    return lease


def test_every_public_store_method_is_classified() -> None:
    public = {name for name, _ in inspect.getmembers(Store, inspect.isfunction)}
    public = {name for name in public if not name.startswith("_")}
    assert set(SEARCH_WRITES) | NOT_SEARCH_WRITES == public, (
        "classify each new Store method: does it write a search, its trials or its models?"
    )
    assert not set(SEARCH_WRITES) & NOT_SEARCH_WRITES


@pytest.mark.parametrize("name", sorted(SEARCH_WRITES))
def test_each_search_write_bumps_the_revision(store: Store, name: str) -> None:
    state, write = SEARCH_WRITES[name]
    lease = prepare(store, state)
    other = store.create_search(SPEC, trials_planned=2, owner="bob").search.id
    before, others_before = revision(store, lease.search_id), revision(store, other)

    write(store, lease)

    assert revision(store, lease.search_id) > before
    assert revision(store, other) == others_before, "only the written search changes"
    search = store.get_search(lease.search_id)
    assert search is not None and search.revision == revision(store, lease.search_id)


def test_reads_and_heartbeats_leave_the_revision_alone(store: Store) -> None:
    lease = prepare(store, "trial")
    before = revision(store, lease.search_id)

    store.get_search(lease.search_id)
    store.list_searches(limit=10, owner=None)
    store.list_trials(lease.search_id)
    store.list_models(lease.search_id)
    store.is_cancel_requested(lease.search_id)
    store.renew_lease(lease, 30)
    store.worker_heartbeat("w1", lease.search_id)

    assert revision(store, lease.search_id) == before


def test_a_new_search_starts_at_revision_0(store: Store) -> None:
    search = store.create_search(SPEC, trials_planned=2, owner="alice").search
    assert search.revision == 0 == revision(store, search.id)
    assert store.get_revision("0" * 32) is None


def test_a_refused_write_leaves_the_revision_alone(store: Store) -> None:
    lease = prepare(store, "trial")
    store.request_cancel(lease.search_id)
    store.finish_search(lease, SearchStatus.CANCELLED)
    before = revision(store, lease.search_id)

    with pytest.raises(LeaseLostError):
        store.record_epoch(lease, "0", epoch=1, metrics={}, score=None, params=1, seconds=1)

    assert revision(store, lease.search_id) == before
