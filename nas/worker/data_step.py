"""A search's data step: the first slot that needs the search's photos, on a host that can
read them, claims the step and prepares them (scan, confinement checks, decode through its
own cache, split) into the search's artifacts; every other slot, on any host, waits for it
and reads the prepared file, never the photos, and so does the search's finishing step. A
slot on a host that cannot read the photos notes so and waits; once no live worker can, the
search fails. Imports Keras (through ``tuning``): load it only in a process whose
``KERAS_BACKEND`` is already set."""

from __future__ import annotations

import logging
import time

from nas.core.artifacts import SearchArtifacts
from nas.core.errors import DatasetError
from nas.core.settings import Settings
from nas.core.specs import DatasetSpec
from nas.core.store import (
    DataLease,
    DataStepRecord,
    DataStepState,
    LeaseLostError,
    SlotLease,
    Store,
)
from nas.worker.prepared_data import read_prepared, write_prepared
from nas.worker.process import describe_error
from nas.worker.search_data import SearchData, load_search_data, unreadable_here
from nas.worker.signals import Interruptions
from nas.worker.tuning import SearchInterrupted

log = logging.getLogger(__name__)

#: How often a slot waiting for another to prepare the data looks again.
WAIT_POLL_SECONDS = 0.5
#: How often the preparer notes its progress (which renews the data step's lease).
PROGRESS_SECONDS = 1.0


def obtain_search_data(
    store: Store,
    settings: Settings,
    lease: SlotLease,
    dataset: DatasetSpec,
    interruptions: Interruptions,
) -> SearchData:
    """The search's data, for the slot of ``lease``: read from the search's artifacts once
    prepared, else prepared here if the step is free and this host can read the photos,
    else waited for.

    Raises:
        DatasetError: the photos cannot be used (this slot prepared them) or the prepared
            file cannot be read.
        SearchInterrupted: SIGTERM came while the data was prepared or waited for.
        LeaseLostError: the slot's or the data step's lease is gone, or the search failed
            (no live worker can read the photos, say).
    """
    artifacts = SearchArtifacts(settings.artifacts_dir, lease.search_id)
    waiting_for = None
    unreadable_noted = False
    while True:
        step = store.get_data_step(lease.search_id)
        if step is None:
            raise LeaseLostError(f"search {lease.search_id} no longer exists")
        if step.state == DataStepState.READY:
            return _read_ready(artifacts, step)
        if step.state == DataStepState.FAILED:
            raise LeaseLostError(f"the data of search {lease.search_id} failed: {step.error}")
        if step.state == DataStepState.PENDING:
            unreadable = unreadable_here(dataset, settings)
            if unreadable:
                if not unreadable_noted:
                    log.warning(
                        "this host cannot read %s inside its data roots (NAS_DATA_ROOTS): "
                        "waiting for a worker that can to prepare the search's data",
                        " and ".join(unreadable),
                    )
                    unreadable_noted = True
                store.note_data_unreadable(
                    lease, _unreadable_reason(unreadable), live_seconds=settings.lease_seconds
                )
            else:
                claimed = store.claim_data_step(lease, settings.lease_seconds)
                if claimed is not None:
                    return _prepare(store, settings, claimed, dataset, artifacts, interruptions)
        elif step.holder != waiting_for:
            waiting_for = step.holder
            log.info("waiting for worker %s to prepare the search's data", step.worker_id)
        if interruptions.requested:
            raise SearchInterrupted("stopped while waiting for the search's data")
        time.sleep(WAIT_POLL_SECONDS)


def read_search_data(store: Store, settings: Settings, search_id: str) -> SearchData:
    """The search's prepared data, for its finishing step: a search whose data no slot
    prepared ran no trial.

    Raises:
        DatasetError: the data was never prepared, or its file cannot be read.
    """
    step = store.get_data_step(search_id)
    if step is None or step.state != DataStepState.READY:
        raise DatasetError("the search's data was never prepared")
    return _read_ready(SearchArtifacts(settings.artifacts_dir, search_id), step)


def _read_ready(artifacts: SearchArtifacts, step: DataStepRecord) -> SearchData:
    return read_prepared(artifacts.data_dir / step.info["file"])


def _unreadable_reason(unreadable: list[str]) -> str:
    """Why the search fails once no live worker can read its photos: the same words whether
    the sources are missing or out of the roots, whether or not they exist out there."""
    what = " and ".join(unreadable)
    return describe_error(
        DatasetError(f"no live worker can read {what} inside its data roots (NAS_DATA_ROOTS)")
    )


def _prepare(
    store: Store,
    settings: Settings,
    lease: DataLease,
    dataset: DatasetSpec,
    artifacts: SearchArtifacts,
    interruptions: Interruptions,
) -> SearchData:
    """Prepare the search's data under the data step's ``lease`` and mark it ready."""
    started = time.monotonic()
    progress = _Progress(store, lease, settings.lease_seconds, interruptions)
    data = load_search_data(
        dataset, settings, on_decoded=progress.decoded_one, on_progress=progress.advance
    )
    # A whole lease for the write, however long ago the last note was.
    progress.note()
    # Each claim writes a file of its own: a holder fenced out meanwhile overwrites nothing.
    prepared = artifacts.data_dir / f"prepared-{lease.token}.npz"
    write_prepared(prepared, data)
    store.mark_data_ready(
        lease,
        {
            "file": prepared.name,
            "bytes": prepared.stat().st_size,
            "decoded": progress.decoded,
            "seconds": round(time.monotonic() - started, 3),
        }
        | data.info(),
    )
    # What earlier holders left (files of fenced-out claims, their half-written temporaries).
    for stale in artifacts.data_dir.iterdir():
        if stale != prepared:
            stale.unlink(missing_ok=True)
    log.info(
        "prepared the search's data: %d photos (%d decoded here) in %.1f s",
        len(data.images.labels),
        progress.decoded,
        time.monotonic() - started,
    )
    return data


class _Progress:
    """The preparer's progress, noted in the store at most every ``PROGRESS_SECONDS`` (the
    first at once) with the count of photos decoded: each note renews the data step's lease,
    so a preparer that stalls (on a hung file system, say) loses the step after a lease
    however alive its slot is; a holder that lost the lease stops (fenced by its token).
    Stops the preparation on SIGTERM."""

    def __init__(
        self, store: Store, lease: DataLease, lease_seconds: float, interruptions: Interruptions
    ) -> None:
        self.decoded = 0
        self._store = store
        self._lease = lease
        self._lease_seconds = lease_seconds
        self._interruptions = interruptions
        self._next_note = 0.0

    def decoded_one(self) -> None:
        """One more photo decoded."""
        self.decoded += 1
        self.advance()

    def advance(self) -> None:
        """A step of the preparation done (a photo decoded, a file hashed, a chunk
        downloaded...)."""
        if self._interruptions.requested:
            raise SearchInterrupted("stopped while preparing the search's data")
        if time.monotonic() >= self._next_note:
            self.note()

    def note(self) -> None:
        """Note the progress now, renewing the data step's lease."""
        self._store.record_data_progress(self._lease, self.decoded, self._lease_seconds)
        self._next_note = time.monotonic() + PROGRESS_SECONDS
