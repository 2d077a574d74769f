"""A search's revision: every store write to the search, its trials or its models bumps it,
in the write's own transaction; reads and writes of other things leave it alone."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from nas.core.store import (
    ExportedModel,
    FinalTraining,
    Lease,
    LeaseLostError,
    OracleOutcome,
    SearchStatus,
    SlotLease,
    Store,
    TrialStatus,
)
from tests.support.leases import extension_now, finish_trials, join

SPEC = {"objective": "val_accuracy"}


@dataclass(frozen=True)
class Held:
    """The search a write goes to, and the leases held on it (made-up ones where none is)."""

    search_id: str
    slot: SlotLease
    finishing: Lease


#: What each write needs the search to be in: "queued"; "slot" (running, with a slot);
#: "trial" (a slot running trial "0"); "expired" (that slot's lease run out); "exhausted"
#: (no more trials, no slot left); "finishing" (a worker holds its finishing step).
Write = Callable[[Store, Held], object]
SEARCH_WRITES: dict[str, tuple[str, Write]] = {
    "request_cancel": ("queued", lambda store, held: store.request_cancel(held.search_id)),
    "join_next": (
        "queued",
        lambda store, _held: store.join_next("w2", hostname="h", lease_seconds=30),
    ),
    "leave_slot": (
        "slot",
        lambda store, held: store.leave_slot(held.slot, died=False, max_attempts=3),
    ),
    "reap_expired": ("expired", lambda store, _held: store.reap_expired(max_attempts=3)),
    "extend_search": (
        "ended",
        lambda store, held: store.extend_search(
            held.search_id,
            revision=revision(store, held.search_id),
            spec=SPEC,
            trials_planned=3,
            extension=extension_now(max_trials=1),
        ),
    ),
    "record_run_context": (
        "slot",
        lambda store, held: store.record_run_context(
            held.slot, accelerator={"platform": "cpu"}, precision="float32", dataset_info={}
        ),
    ),
    "mark_trials_exhausted": ("slot", lambda store, held: store.mark_trials_exhausted(held.slot)),
    "oracle_step": (
        "slot",
        lambda store, held: store.oracle_step(
            held.slot, lambda _context: OracleOutcome(None, trials_exhausted=True)
        ),
    ),
    "fail_search": ("slot", lambda store, held: store.fail_search(held.slot, "boom")),
    # Noted while another worker may read the photos, it writes only the data step; once
    # none can, it fails the search (here at once: no other worker, no time to wait).
    "note_data_unreadable": (
        "slot",
        lambda store, held: store.note_data_unreadable(held.slot, "unreadable", live_seconds=0),
    ),
    "claim_finishing": ("exhausted", lambda store, _held: store.claim_finishing("w2", 30)),
    "release": ("finishing", lambda store, held: store.release(held.finishing)),
    "finish_search": (
        "finishing",
        lambda store, held: store.finish_search(held.finishing, SearchStatus.SUCCEEDED),
    ),
    "start_trial": ("slot", lambda store, held: store.start_trial(held.slot, "1", {"u": 8})),
    "resume_trial": ("trial", lambda store, held: store.resume_trial(held.slot, "0", epochs=0)),
    "record_epoch": (
        "trial",
        lambda store, held: store.record_epoch(
            held.slot, "0", epoch=0, metrics={"val_accuracy": 0.5}, score=0.5, params=10, seconds=1
        ),
    ),
    "finish_trial": (
        "trial",
        lambda store, held: store.finish_trial(
            held.slot, "0", status=TrialStatus.COMPLETED, score=0.5, seconds=2
        ),
    ),
    "record_models": (
        "finishing",
        lambda store, held: store.record_models(
            held.finishing,
            [
                ExportedModel(
                    search_id=held.search_id,
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
        "finishing",
        lambda store, held: store.record_final_training(
            held.finishing,
            [
                FinalTraining(
                    trial_id="0", rank=1, epochs=3, images=40, seconds=9.5, test_accuracy=0.5
                )
            ],
        ),
    ),
    # Not writes, but they lock the row as the fenced writes do, with the same statement.
    "check_lease": ("finishing", lambda store, held: store.check_lease(held.finishing)),
    "check_slot": ("slot", lambda store, held: store.check_slot(held.slot)),
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
    "slot_should_yield",
    # They write only a lease's expiry, which no answer shows: bumping it would make every
    # heartbeat cost each poller a full answer.
    "renew_lease",
    "renew_slot",
    # The data step, which no answer shows (the search's `dataset` is what a slot records
    # with record_run_context).
    "get_data_step",
    "claim_data_step",
    "record_data_progress",
    "mark_data_ready",
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


def prepare(store: Store, state: str) -> Held:
    """A search in ``state``, and the leases on it."""
    search_id = store.create_search(SPEC, trials_planned=2, owner="alice").search.id
    none = Held(
        search_id, SlotLease("none", search_id, "none"), Lease(search_id, "none", attempt=0)
    )
    if state == "queued":
        return none
    slot = join(store, "w1", lease_seconds=0.0 if state == "expired" else 30)
    assert slot.search_id == search_id
    if state in ("trial", "expired"):
        store.start_trial(slot, "0", {"u": 4})
    if state == "expired":
        time.sleep(0.01)
    if state == "exhausted":
        store.mark_trials_exhausted(slot)
        store.leave_slot(slot, died=False, max_attempts=3)
    if state in ("finishing", "ended"):
        finishing = finish_trials(store, slot)
        if state == "ended":
            store.finish_search(finishing, SearchStatus.SUCCEEDED)
        return Held(search_id, slot, finishing)
    return Held(search_id, slot, none.finishing)


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
    held = prepare(store, state)
    other = store.create_search(SPEC, trials_planned=2, owner="bob").search.id
    before, others_before = revision(store, held.search_id), revision(store, other)

    write(store, held)

    assert revision(store, held.search_id) > before
    assert revision(store, other) == others_before, "only the written search changes"
    search = store.get_search(held.search_id)
    assert search is not None and search.revision == revision(store, held.search_id)


def test_reads_and_heartbeats_leave_the_revision_alone(store: Store) -> None:
    held = prepare(store, "trial")
    before = revision(store, held.search_id)

    store.get_search(held.search_id)
    store.list_searches(limit=10, owner=None)
    store.list_trials(held.search_id)
    store.list_models(held.search_id)
    store.is_cancel_requested(held.search_id)
    store.renew_slot(held.slot, 30)
    store.slot_should_yield(held.slot)
    store.oracle_step(held.slot, lambda _context: OracleOutcome(None))
    store.worker_heartbeat("w1")

    assert revision(store, held.search_id) == before


def test_a_new_search_starts_at_revision_0(store: Store) -> None:
    search = store.create_search(SPEC, trials_planned=2, owner="alice").search
    assert search.revision == 0 == revision(store, search.id)
    assert store.get_revision("0" * 32) is None


def test_a_refused_write_leaves_the_revision_alone(store: Store) -> None:
    held = prepare(store, "trial")
    store.request_cancel(held.search_id)
    store.leave_slot(held.slot, died=False, max_attempts=3)
    finishing = store.claim_finishing("w1", 30)
    assert finishing is not None
    store.finish_search(finishing, SearchStatus.CANCELLED)
    before = revision(store, held.search_id)

    with pytest.raises(LeaseLostError):
        store.record_epoch(held.slot, "0", epoch=1, metrics={}, score=None, params=1, seconds=1)

    assert revision(store, held.search_id) == before
