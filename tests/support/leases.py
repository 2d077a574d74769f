"""Store leases the way a worker takes them, for tests that write trials and models without
a worker process: a slot in a search, then the search's finishing step."""

from __future__ import annotations

from datetime import UTC, datetime

from nas.core.store import Extension, Lease, SlotLease, Store


def join(store: Store, worker_id: str = "w1", lease_seconds: float = 60) -> SlotLease:
    """A slot of ``worker_id`` in the search that needs one most (there must be one)."""
    lease = store.join_next(worker_id, hostname="test-host", lease_seconds=lease_seconds)
    assert lease is not None, "no search wants a slot"
    return lease


def finish_trials(store: Store, slot: SlotLease, lease_seconds: float = 60) -> Lease:
    """The oracle of ``slot``'s search hands out no more trials: the slot leaves and its
    worker takes the search's finishing step (export, close)."""
    store.mark_trials_exhausted(slot)
    store.leave_slot(slot, died=False, max_attempts=3)
    lease = store.claim_finishing(slot.worker_id, lease_seconds)
    assert lease is not None and lease.search_id == slot.search_id, lease
    return lease


def extension_now(max_trials: int) -> Extension:
    """An extension made now of a search run that succeeded after its trials: ``max_trials``
    more."""
    return Extension(
        extended_at=datetime.now(UTC),
        max_trials=max_trials,
        seconds=None,
        ended_as="succeeded",
        ended_by="max_trials",
        wall_seconds=1.0,
        budget_spent=0.0,
        attempts=1,
    )
