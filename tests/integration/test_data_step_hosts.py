"""Which host prepares a search's data, on a real store (SQLite file and PostgreSQL) with real
photos: a slot whose host cannot read the photos inside its data roots never claims the data
step; it notes so and waits for a worker that can, and once no live worker can, the search
fails saying so, in the same words whether the photos are missing there or out of its roots."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from nas.cli.launcher import wait_until
from nas.core.settings import Settings
from nas.core.specs import DatasetSpec
from nas.core.store import (
    DataStepRecord,
    DataStepState,
    LeaseLostError,
    SearchStatus,
    SlotLease,
    Store,
)
from nas.worker.data_step import obtain_search_data
from nas.worker.search_data import unreadable_here
from nas.worker.signals import Interruptions

SPEC = {"objective": "val_accuracy"}


@pytest.fixture
def empty_root(tmp_path: Path) -> Path:
    """The data root of a host that has none of the photos."""
    root = tmp_path / "empty-root"
    root.mkdir()
    return root


def photos_at(path: Path) -> DatasetSpec:
    return DatasetSpec(path=str(path), image_size=32, validation_split=0.25)


def new_search(store: Store) -> str:
    return store.create_search(SPEC, trials_planned=2, owner="alice").search.id


def slot_of_new_worker(store: Store, worker_id: str, hostname: str) -> SlotLease:
    """A slot of a worker that just registered (live) on ``hostname``."""
    store.register_worker(
        worker_id, hostname=hostname, pid=os.getpid(), backend="tensorflow", slots=1
    )
    slot = store.join_next(worker_id, hostname=hostname, lease_seconds=60)
    assert slot is not None
    return slot


def step_of(store: Store, search_id: str) -> DataStepRecord:
    step = store.get_data_step(search_id)
    assert step is not None
    return step


def test_a_host_without_the_photos_waits_for_one_that_has_them(
    store: Store, settings: Settings, data_root: Path, empty_root: Path
) -> None:
    search_id = new_search(store)
    gpu = slot_of_new_worker(store, "gpu", "gpu-host")
    photo = slot_of_new_worker(store, "photos", "photo-host")
    without_photos = settings.model_copy(update={"data_roots": [empty_root]})
    flowers = photos_at(data_root / "flowers")
    interruptions = Interruptions()

    def noted() -> DataStepRecord | None:
        step = step_of(store, search_id)
        return step if step.unreadable_by else None

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(
            obtain_search_data, store, without_photos, gpu, flowers, interruptions
        )
        try:
            step = wait_until(noted, 60, "the slot without the photos to note it", 0.1)
            assert (step.state, step.token, step.unreadable_by) == (
                DataStepState.PENDING,
                0,
                ("gpu",),
            ), "noted, not claimed"
            assert not waiting.done(), "it waits"
            prepared = obtain_search_data(store, settings, photo, flowers, interruptions)
            waited = waiting.result(timeout=60)
        finally:
            interruptions.requested = True  # a waiting slot left behind stops

    step = step_of(store, search_id)
    assert (step.state, step.token, step.worker_id) == (DataStepState.READY, 1, "photos")
    assert step.info["decoded"] == step.info["images"] + step.info["skipped_images"] > 0
    np.testing.assert_array_equal(waited.images.images, prepared.images.images)
    np.testing.assert_array_equal(waited.validation, prepared.validation)
    search = store.get_search(search_id)
    assert search is not None and search.status == SearchStatus.RUNNING


@pytest.mark.parametrize("where", ["missing from its roots", "out of its roots"])
def test_the_search_fails_once_no_live_worker_can_read_the_photos(
    store: Store, settings: Settings, data_root: Path, empty_root: Path, where: str
) -> None:
    # The same words whether the folder is not there or lies, real, out of the host's roots.
    path = empty_root / "flowers" if where == "missing from its roots" else data_root / "flowers"
    search_id = new_search(store)
    store.register_worker("photos", hostname="photo-host", pid=1, backend="tensorflow", slots=1)
    store.worker_stopped("photos")  # it could read them, but it stopped: not live
    gpu = slot_of_new_worker(store, "gpu", "gpu-host")
    without_photos = settings.model_copy(update={"data_roots": [empty_root], "lease_seconds": 1.0})

    started = time.monotonic()
    with pytest.raises(LeaseLostError):
        obtain_search_data(store, without_photos, gpu, photos_at(path), Interruptions())
    assert time.monotonic() - started < 10, "a lease to wait for a worker that can, not more"

    error = (
        f"DatasetError: no live worker can read dataset.path {path} inside its data roots "
        "(NAS_DATA_ROOTS); hosts that cannot: gpu-host"
    )
    step = step_of(store, search_id)
    assert (step.state, step.error, step.token, step.unreadable_by) == (
        DataStepState.FAILED,
        error,
        0,
        ("gpu",),
    )
    search = store.get_search(search_id)
    assert search is not None
    assert (search.status, search.error) == (SearchStatus.FAILED, error)


def test_what_a_host_cannot_read_is_each_local_source_out_of_its_roots_or_missing(
    settings: Settings, data_root: Path, empty_root: Path
) -> None:
    flowers, gone = data_root / "flowers", data_root / "gone"
    with_photos = settings
    assert unreadable_here(photos_at(flowers), with_photos) == []
    both = DatasetSpec(path=str(gone), test_path=str(flowers))
    assert unreadable_here(both, with_photos) == [f"dataset.path {gone}"]
    shards = f"{data_root}/*/*.tfrec"  # its folder (the root) is there
    for remote_or_there in ("gs://bucket/shards/*.tfrec", shards):
        assert unreadable_here(DatasetSpec(tfrecords=remote_or_there), with_photos) == []
    assert unreadable_here(DatasetSpec(name="tf_flowers"), with_photos) == []

    without_photos = settings.model_copy(update={"data_roots": [empty_root]})
    both = DatasetSpec(path=str(flowers), test_path=str(empty_root / "test"))
    assert unreadable_here(both, without_photos) == [
        f"dataset.path {flowers}",
        f"dataset.test_path {empty_root / 'test'}",
    ]
    assert unreadable_here(DatasetSpec(tfrecords=shards), without_photos) == [
        f"dataset.tfrecords {shards}"
    ]
