"""A search's data step on a real store (SQLite file and PostgreSQL): claimed once under its own
lease, renewed by its holder's progress alone, fenced by its claim count, taken back from a lost
or stalled holder, failing the search only after NAS_MAX_ATTEMPTS lost leases in a row without
progress, or once no live worker can read the photos."""

from __future__ import annotations

import multiprocessing
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nas.core.store import (
    DataLease,
    DataStepRecord,
    DataStepState,
    LeaseLostError,
    SearchStatus,
    SlotLease,
    Store,
    create_store,
)
from tests.support.leases import extension_now, finish_trials, join

SPEC = {"objective": "val_accuracy"}
READY_INFO = {"file": "prepared-1.npz", "fingerprint": "f" * 64, "images": 60}


def new_search(store: Store) -> str:
    return store.create_search(SPEC, trials_planned=2, owner="alice").search.id


def step_of(store: Store, search_id: str) -> DataStepRecord:
    step = store.get_data_step(search_id)
    assert step is not None
    return step


def claim(store: Store, slot: SlotLease, lease_seconds: float = 60) -> DataLease:
    lease = store.claim_data_step(slot, lease_seconds)
    assert lease is not None, "the data step was not free"
    return lease


def expire(store: Store, max_attempts: int = 3) -> list[str]:
    time.sleep(0.01)
    return store.reap_expired(max_attempts)


def test_a_new_search_has_a_pending_data_step(store: Store) -> None:
    step = step_of(store, new_search(store))
    assert (step.state, step.holder, step.token, step.info) == (DataStepState.PENDING, None, 0, {})
    assert store.get_data_step("0" * 32) is None


def test_one_slot_claims_the_data_step_and_marks_it_ready_for_all(store: Store) -> None:
    search_id = new_search(store)
    first, second = join(store, "w1"), join(store, "w2")
    lease = claim(store, first)
    assert lease == DataLease(search_id, holder=first.slot_id, worker_id="w1", token=1)
    assert store.claim_data_step(second, 60) is None, "held by the first"
    step = step_of(store, search_id)
    assert (step.state, step.holder, step.worker_id) == (
        DataStepState.PREPARING,
        first.slot_id,
        "w1",
    )
    assert step.lease_expires_at is not None

    store.record_data_progress(lease, 7, 60)
    noted = step_of(store, search_id)
    assert (noted.images_decoded, noted.images_reached) == (7, 7)
    store.mark_data_ready(lease, READY_INFO)

    ready = step_of(store, search_id)
    assert (ready.state, ready.holder, ready.token, ready.info) == (
        DataStepState.READY,
        first.slot_id,
        1,
        READY_INFO,
    )
    assert ready.prepared_at is not None and ready.lease_expires_at is None
    assert store.claim_data_step(second, 60) is None, "ready: nothing to claim"
    with pytest.raises(LeaseLostError):
        store.record_data_progress(lease, 8, 60)


def test_a_claim_needs_the_claimants_own_lease(store: Store) -> None:
    search_id = new_search(store)
    stale = join(store, "w1", lease_seconds=0.0)
    expire(store)
    with pytest.raises(LeaseLostError):
        store.claim_data_step(stale, 60)
    assert step_of(store, search_id).state == DataStepState.PENDING


def test_a_holder_that_stops_noting_progress_loses_the_data_step_however_alive_its_slot(
    store: Store,
) -> None:
    search_id = new_search(store)
    holder, other = join(store, "w1"), join(store, "w2")
    stalled = claim(store, holder, lease_seconds=1.0)
    store.record_data_progress(stalled, 5, 1.0)
    time.sleep(1.1)
    store.renew_slot(holder, 60)  # its worker heartbeats the slot; its decoding hangs
    assert expire(store) == [search_id], "reaped after its lease"
    step = step_of(store, search_id)
    assert (step.state, step.holder, step.lost_leases) == (DataStepState.PENDING, None, 1)
    store.check_slot(holder)  # the slot itself lives on

    fresh = claim(store, other, lease_seconds=0.0)
    assert fresh.token == 2
    store.record_data_progress(fresh, 6, 60)
    extended = step_of(store, search_id).lease_expires_at
    assert extended is not None and extended > datetime.now(UTC) + timedelta(seconds=50)
    assert expire(store) == [], "its progress renewed it"
    step = step_of(store, search_id)
    assert (step.state, step.token, step.lost_leases) == (DataStepState.PREPARING, 2, 0)
    with pytest.raises(LeaseLostError):
        store.record_data_progress(stalled, 7, 60)


def lose_holder(store: Store, search_id: str, decoded: int, max_attempts: int = 3) -> DataLease:
    """A worker joins, claims the data step, decodes ``decoded`` photos and stops answering."""
    slot = join(store, "doomed", lease_seconds=0.0)
    assert slot.search_id == search_id
    lease = claim(store, slot, lease_seconds=0.0)
    if decoded:
        store.record_data_progress(lease, decoded, 0.0)
    expire(store, max_attempts)
    return lease


def test_a_lost_holder_is_fenced_and_the_next_claim_gets_a_new_token(store: Store) -> None:
    search_id = new_search(store)
    stale = lose_holder(store, search_id, decoded=5)
    step = step_of(store, search_id)
    assert (step.state, step.holder, step.lost_leases) == (DataStepState.PENDING, None, 1)
    fresh = claim(store, join(store, "w2"))
    assert fresh.token == stale.token + 1
    for write in (
        lambda: store.record_data_progress(stale, 6, 60),
        lambda: store.mark_data_ready(stale, READY_INFO),
    ):
        with pytest.raises(LeaseLostError):
            write()
    store.mark_data_ready(fresh, READY_INFO)
    step = step_of(store, search_id)
    assert (step.state, step.holder, step.worker_id, step.lost_leases) == (
        DataStepState.READY,
        fresh.holder,
        "w2",
        1,  # the loss stays on record
    )


def test_the_search_fails_after_max_attempts_lost_without_more_photos_decoded(
    store: Store,
) -> None:
    search_id = new_search(store)
    # Each holder decodes more photos than any before it: progress, every time.
    for decoded in (10, 20, 30, 40):
        lose_holder(store, search_id, decoded)
    step = step_of(store, search_id)
    assert (step.state, step.lost_leases, step.images_reached) == (DataStepState.PENDING, 1, 40)
    # Then two holders that get no further than 40: three lost since the last progress.
    lose_holder(store, search_id, decoded=40)
    lose_holder(store, search_id, decoded=0)
    reason = (
        "the worker preparing the search's data stopped answering 3 times in a row without "
        "decoding more photos"
    )
    step = step_of(store, search_id)
    assert (step.state, step.error, step.lost_leases) == (DataStepState.FAILED, reason, 3)
    search = store.get_search(search_id)
    assert search is not None
    assert (search.status, search.error, search.ended_by) == (SearchStatus.FAILED, reason, "error")
    assert store.join_next("w3", hostname="h", lease_seconds=60) is None


def test_a_slot_that_leaves_gives_the_data_step_back_and_one_that_died_counts(
    store: Store,
) -> None:
    search_id = new_search(store)
    for died, lost in ((False, 0), (True, 1)):
        slot = join(store, "w1")
        claim(store, slot)
        store.leave_slot(slot, died=died, max_attempts=3)
        step = step_of(store, search_id)
        assert (step.state, step.holder, step.lost_leases) == (DataStepState.PENDING, None, lost)


def test_a_dataset_error_of_the_holder_fails_the_data_step_and_the_search(store: Store) -> None:
    search_id = new_search(store)
    holder, waiting = join(store, "w1"), join(store, "w2")
    claim(store, holder)
    error = "DatasetError: dataset.path must lie inside one of the configured data roots"
    store.fail_search(holder, error)
    step = step_of(store, search_id)
    assert (step.state, step.error) == (DataStepState.FAILED, error)
    with pytest.raises(LeaseLostError):
        store.claim_data_step(waiting, 60)


def test_a_search_that_ends_otherwise_frees_its_data_step(store: Store) -> None:
    search_id = new_search(store)
    holder, other = join(store, "w1"), join(store, "w2")
    claim(store, holder)
    store.fail_search(other, "RuntimeError: not about the data")
    step = step_of(store, search_id)
    assert (step.state, step.holder, step.error) == (DataStepState.PENDING, None, None)


def test_an_extended_search_keeps_its_ready_data(store: Store) -> None:
    search_id = new_search(store)
    slot = join(store, "w1")
    store.mark_data_ready(claim(store, slot), READY_INFO)
    store.finish_search(finish_trials(store, slot), SearchStatus.SUCCEEDED)
    ready = step_of(store, search_id)
    ended = store.get_search(search_id)
    assert ended is not None and ready.state == DataStepState.READY
    extension = extension_now(max_trials=2)
    extended = store.extend_search(
        search_id, revision=ended.revision, spec=SPEC, trials_planned=4, extension=extension
    )
    assert extended is not None and extended.search.status == SearchStatus.QUEUED
    assert step_of(store, search_id) == ready
    assert store.claim_data_step(join(store, "w2"), 60) is None, "nothing to prepare again"


UNREADABLE = (
    "DatasetError: no live worker can read dataset.path /data/flowers inside its data roots "
    "(NAS_DATA_ROOTS)"
)


def test_the_search_fails_once_no_live_worker_could_read_its_photos_for_a_lease(
    store: Store,
) -> None:
    search_id = new_search(store)
    lease_seconds = 0.5
    gpus = []
    for worker_id, host in (("gpu-1", "gpu-host-1"), ("gpu-2", "gpu-host-2")):
        store.register_worker(worker_id, hostname=host, pid=1, backend="tensorflow", slots=1)
        gpus.append(join(store, worker_id))
        step = store.note_data_unreadable(gpus[-1], UNREADABLE, live_seconds=lease_seconds)
    assert (step.state, step.token, step.unreadable_by) == (
        DataStepState.PENDING,
        0,
        ("gpu-1", "gpu-2"),
    ), "no worker can read them, but one that can may be starting"
    first_noted = step.unreadable_since
    assert first_noted is not None

    time.sleep(lease_seconds)
    store.register_worker("photos", hostname="photo-host", pid=2, backend="tensorflow", slots=1)
    step = store.note_data_unreadable(gpus[0], UNREADABLE, live_seconds=lease_seconds)
    assert (step.state, step.unreadable_by, step.unreadable_since) == (
        DataStepState.PENDING,
        ("gpu-1", "gpu-2"),
        first_noted,
    ), "a live worker that may read them"

    time.sleep(lease_seconds)  # its heartbeat is older than a lease now
    step = store.note_data_unreadable(gpus[1], UNREADABLE, live_seconds=lease_seconds)
    error = f"{UNREADABLE}; hosts that cannot: gpu-host-1, gpu-host-2"
    assert (step.state, step.error, step.token) == (DataStepState.FAILED, error, 0)
    search = store.get_search(search_id)
    assert search is not None
    assert (search.status, search.error, search.ended_by) == (SearchStatus.FAILED, error, "error")
    with pytest.raises(LeaseLostError):
        store.claim_data_step(gpus[0], 60)


def test_only_a_pending_data_step_takes_notes_of_unreadable_photos(store: Store) -> None:
    search_id = new_search(store)
    store.register_worker("gpu", hostname="gpu-host", pid=1, backend="tensorflow", slots=1)
    holder, gpu = join(store, "photos"), join(store, "gpu")
    claim(store, holder)
    step = store.note_data_unreadable(gpu, UNREADABLE, live_seconds=0)
    assert (step.state, step.holder, step.unreadable_by) == (
        DataStepState.PREPARING,
        holder.slot_id,
        (),
    )
    assert step_of(store, search_id) == step


def test_a_search_that_ends_forgets_which_workers_could_not_read_its_photos(
    store: Store,
) -> None:
    search_id = new_search(store)
    gpu = join(store, "gpu")
    assert store.note_data_unreadable(gpu, UNREADABLE, live_seconds=60).unreadable_by == ("gpu",)
    store.fail_search(gpu, "RuntimeError: not about the data")
    step = step_of(store, search_id)
    assert (step.state, step.unreadable_by, step.unreadable_since) == (
        DataStepState.PENDING,
        (),
        None,
    ), "an extension's workers look again"


def _claim_race(
    database_url: str, slot: SlotLease, start: Any, results: multiprocessing.Queue
) -> None:
    store = create_store(database_url)
    store.ping()
    start.wait(60)  # every process connected: now they race for the data step
    lease = store.claim_data_step(slot, 60)
    store.dispose()
    results.put(None if lease is None else lease.token)


def test_racing_slots_claim_the_data_step_exactly_once(store: Store, database_url: str) -> None:
    search_id = new_search(store)
    slots = [join(store, f"w{number}") for number in range(6)]
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()
    start = context.Barrier(len(slots))
    racers = [
        context.Process(target=_claim_race, args=(database_url, slot, start, results))
        for slot in slots
    ]
    for process in racers:
        process.start()
    tokens = [results.get(timeout=120) for _ in racers]
    for process in racers:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert sorted(tokens, key=lambda token: token or 0) == [None] * 5 + [1]
    assert step_of(store, search_id).state == DataStepState.PREPARING
