"""One slot of a search: trials of the search's shared oracle, one after another, until it
hands out no more (or the budget is spent, or another search needs the slot more). Imports
Keras: load it only in a process whose ``KERAS_BACKEND`` is already set."""

from __future__ import annotations

import logging
from enum import Enum

from nas.core.settings import Settings
from nas.core.specs import SearchSpec
from nas.core.store import LeaseLostError, SlotLease, Store
from nas.worker.journal import TrialJournal
from nas.worker.search import SearchSetup, prepare_search
from nas.worker.shared_oracle import SharedOracle
from nas.worker.signals import Interruptions
from nas.worker.tuning import BudgetSpent, SearchCancelled, SearchInterrupted, SlotYielded

log = logging.getLogger(__name__)


class SlotEnd(Enum):
    """Why a slot stopped running trials."""

    #: The oracle hands out no more trials, the budget is spent, or the slot made way for
    #: another search.
    DONE = "done"
    #: The user cancelled the search.
    CANCELLED = "cancelled"
    #: The worker is stopping (SIGTERM): the slot's trial goes to another slot at once.
    INTERRUPTED = "interrupted"


def run_slot(
    store: Store, settings: Settings, lease: SlotLease, interruptions: Interruptions
) -> SlotEnd:
    """Get the search's data, build its tuner on the shared oracle and run its trials."""
    search = store.get_search(lease.search_id)
    if search is None:
        raise LeaseLostError(f"search {lease.search_id} no longer exists")
    spec = SearchSpec.model_validate(search.spec)
    journal = TrialJournal(store, lease, spec.objective)
    try:
        setup = prepare_search(
            store, settings, lease, interruptions, journal=journal, ensure_held=journal.ensure_held
        )
        _record_run_context(store, lease, setup)
        setup.tuner.oracle = SharedOracle(setup.tuner.oracle, store, lease)
        # The oracle hands trials out per tuner id, and a dead slot's trial is known by it.
        setup.tuner.tuner_id = lease.slot_id
        setup.tuner.search(**setup.fit_arguments())
    except BudgetSpent:
        log.info("the search's budget is spent: no new trial")
        store.mark_trials_exhausted(lease)
    except SlotYielded:
        log.info("another search waits for a slot: this one makes way")
    except SearchCancelled:
        return SlotEnd.CANCELLED
    except SearchInterrupted:
        return (
            SlotEnd.CANCELLED if store.is_cancel_requested(lease.search_id) else SlotEnd.INTERRUPTED
        )
    return SlotEnd.DONE


def _record_run_context(store: Store, lease: SlotLease, setup: SearchSetup) -> None:
    placement, data = setup.placement, setup.data
    store.record_run_context(
        lease,
        accelerator=placement.accelerator.as_dict(),
        precision=setup.precision,
        dataset_info=data.info() | {"model_bounds": setup.bounds.as_dict()},
    )
    log.info(
        "slot %s training on %s (%s, %d replicas) in %s: %d train / %d validation / %d test images",
        lease.slot_id[:8],
        placement.accelerator.platform,
        placement.accelerator.strategy,
        placement.accelerator.replicas,
        setup.precision,
        len(data.train),
        len(data.validation),
        0 if data.test is None else len(data.test.labels),
    )
