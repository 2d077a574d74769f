"""One search spread over several workers, each with its own cache and id as on its own host,
sharing only the database and the artifacts folder: real worker processes, real photos. The
search's photos are decoded once, by one worker that can read them, and read by the others
from the artifacts."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from nas.cli.launcher import settings_env, start_nas, stop_process, wait_until
from nas.core.settings import Settings
from nas.core.store import (
    DataStepRecord,
    DataStepState,
    SearchRecord,
    SearchStatus,
    Store,
    TrialStatus,
)
from tests.support.factories import search_body, submit
from tests.support.flowers import copy_flowers_slice

pytestmark = pytest.mark.slow


@pytest.fixture
def fleet_settings(settings: Settings) -> Settings:
    """Short leases, so that a dead worker's trials go elsewhere within seconds."""
    return settings.model_copy(
        update={"heartbeat_seconds": 0.5, "lease_seconds": 4.0, "cancel_grace_seconds": 2.0}
    )


@pytest.fixture
def photos(fleet_settings: Settings) -> Path:
    return copy_flowers_slice(fleet_settings.data_roots[0] / "fleet-flowers", per_class=8)


def without_photos(settings: Settings, tmp_path: Path) -> Settings:
    """``settings`` on a host whose one data root holds none of the photos."""
    root = tmp_path / "empty-root"
    root.mkdir(exist_ok=True)
    return settings.model_copy(update={"data_roots": [root]})


def fleet_body(photos: Path, **tuner: Any) -> dict[str, Any]:
    return search_body(
        photos,
        space={"max_conv_blocks": 2, "filters": [8, 16]},
        tuner={"max_trials": 9, "epochs": 1, "batch_size": 16, "seed": 5, **tuner},
        export_top_k=1,
    )


@contextmanager
def workers(
    settings: Settings, tmp_path: Path, count: int, **overrides: Any
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` workers, each with its own cache folder (as on its own host); those still
    running after are stopped, and must stop cleanly."""
    started = []
    for number in range(count):
        own = settings.model_copy(update={"cache_dir": tmp_path / f"cache-{number}", **overrides})
        started.append(start_nas(["worker"], settings_env(own), tmp_path / f"worker-{number}.log"))
    try:
        yield started
    finally:
        alive = [worker for worker in started if worker.poll() is None]
        for worker in alive:
            assert stop_process(worker) == 0


def finished(store: Store, search_id: str, timeout: float = 600) -> SearchRecord:
    def done() -> SearchRecord | None:
        search = store.get_search(search_id)
        return search if search is not None and search.status.terminal else None

    return wait_until(done, timeout, f"search {search_id} to finish", 0.5)


def logs(tmp_path: Path) -> str:
    return "\n".join(path.read_text()[-3000:] for path in sorted(tmp_path.rglob("worker-*.log")))


def data_step(store: Store, search_id: str) -> DataStepRecord:
    step = store.get_data_step(search_id)
    assert step is not None
    return step


def decoded_in(cache: Path) -> bool:
    """Whether a worker with this cache folder decoded photos (or even hashed them)."""
    return any(cache.glob("*.npz")) or (cache / "digests").exists()


def assert_prepared_once(
    store: Store, settings: Settings, search_id: str, caches: list[Path], preparer: Path
) -> DataStepRecord:
    """The search's data step is ready after one claim, the worker of cache folder ``preparer``
    alone decoded the photos (every one of them), and the search's data folder holds the one
    prepared file."""
    step = data_step(store, search_id)
    assert (step.state, step.token) == (DataStepState.READY, 1), step
    assert step.info["decoded"] == step.info["images"] + step.info["skipped_images"]
    assert [cache for cache in caches if decoded_in(cache)] == [preparer]
    prepared = settings.artifacts_dir / search_id / "data"
    assert [path.name for path in prepared.iterdir()] == [step.info["file"]]
    return step


@pytest.mark.parametrize("algorithm", ["random", "bayesian", "hyperband"])
def test_three_workers_share_one_search(
    algorithm: str,
    fleet_settings: Settings,
    store: Store,
    client: TestClient,
    photos: Path,
    tmp_path: Path,
) -> None:
    tuner = {"hyperband_factor": 3, "epochs": 3} if algorithm == "hyperband" else {}
    search_id = submit(client, fleet_body(photos, algorithm=algorithm, **tuner))["id"]
    with workers(fleet_settings, tmp_path, 3) as fleet:
        search = finished(store, search_id)
    assert search.status == SearchStatus.SUCCEEDED, logs(tmp_path)
    # One worker claimed the data step and decoded the photos; the others read its file.
    caches = [tmp_path / f"cache-{number}" for number in range(3)]
    preparer = fleet.index(worker_process(fleet, store, str(data_step(store, search_id).worker_id)))
    assert_prepared_once(store, fleet_settings, search_id, caches, caches[preparer])
    trials = store.list_trials(search_id)
    assert len(trials) == search.trials_planned, "each planned trial once"
    assert all(trial.status == TrialStatus.COMPLETED for trial in trials)
    ran = Counter(trial.worker_id for trial in trials)
    assert len(ran) == 3, f"each worker ran some trials: {ran}"
    assert all(trial.hostname and trial.accelerator for trial in trials)
    assert store.list_models(search_id), "the best model was exported"
    board = client.get(f"/v1/searches/{search_id}/leaderboard").json()["trials"]
    assert {trial["worker_id"] for trial in board} == set(ran)


def worker_process(
    fleet: list[subprocess.Popen[bytes]], store: Store, worker_id: str
) -> subprocess.Popen[bytes]:
    """The process of the worker ``worker_id`` (its id holds its pid)."""
    pids = {worker.pid: worker for worker in fleet}
    (record,) = [worker for worker in store.list_workers() if worker.id == worker_id]
    return pids[record.pid]


def test_a_worker_killed_mid_trial_holds_up_no_other_and_its_trial_runs_elsewhere(
    fleet_settings: Settings, store: Store, client: TestClient, photos: Path, tmp_path: Path
) -> None:
    # A lease long enough to tell "the others went on" from "they waited for the reaper".
    settings = fleet_settings.model_copy(update={"lease_seconds": 20.0})
    body = fleet_body(photos, max_trials=6, epochs=4)
    search_id = submit(client, body)["id"]
    with workers(settings, tmp_path, 3) as fleet:

        def victim_mid_trial() -> tuple[str, str, list] | None:
            trials = store.list_trials(search_id)
            if not trials:
                return None
            first = min(trials, key=lambda trial: trial.started_at)
            running = [
                trial
                for trial in trials
                if trial.worker_id == first.worker_id
                and trial.status == TrialStatus.RUNNING
                and trial.epochs >= 1
            ]
            if not running:
                return None
            done = [trial for trial in trials if trial.status == TrialStatus.COMPLETED]
            return first.worker_id, running[0].trial_id, done

        victim_id, killed_trial, before = wait_until(victim_mid_trial, 300, "a trial in progress")
        victim = worker_process(fleet, store, victim_id)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        killed_at = time.monotonic()

        def others_progress() -> bool:
            epochs = {
                trial.trial_id: trial.epochs
                for trial in store.list_trials(search_id)
                if trial.worker_id != victim_id
            }
            return epochs != others_at_kill

        others_at_kill = {
            trial.trial_id: trial.epochs
            for trial in store.list_trials(search_id)
            if trial.worker_id != victim_id
        }
        wait_until(others_progress, settings.lease_seconds, "the other workers to go on")
        assert time.monotonic() - killed_at < settings.lease_seconds, "nobody waited for it"
        search = finished(store, search_id)
    assert search.status == SearchStatus.SUCCEEDED, logs(tmp_path)
    trials = {trial.trial_id: trial for trial in store.list_trials(search_id)}
    assert len(trials) == search.trials_planned, "each planned trial once"
    assert all(trial.status == TrialStatus.COMPLETED for trial in trials.values())
    assert trials[killed_trial].worker_id != victim_id, "run again on another worker"
    for trial in before:
        assert trials[trial.trial_id] == trial, "a trial finished before the kill changed"


def test_a_worker_killed_in_the_finishing_step_leaves_it_to_another(
    fleet_settings: Settings, store: Store, client: TestClient, photos: Path, tmp_path: Path
) -> None:
    search_id = submit(client, fleet_body(photos, max_trials=3))["id"]
    with workers(fleet_settings, tmp_path, 2) as fleet:

        def finishing_worker() -> str | None:
            search = store.get_search(search_id)
            assert search is not None and not search.status.terminal, search
            return search.worker_id

        victim = worker_process(fleet, store, wait_until(finishing_worker, 300, "finishing"))
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        search = finished(store, search_id)
    assert search.status == SearchStatus.SUCCEEDED, logs(tmp_path)
    first, second = search.attempts
    assert first.outcome.value == "lease_expired" and second.outcome.value == "succeeded"
    assert first.worker_id != second.worker_id
    (model,) = store.list_models(search_id)
    assert (fleet_settings.artifacts_dir / search_id / "models" / "rank-001").is_dir(), model


def test_a_worker_killed_while_preparing_the_data_leaves_it_to_another(
    fleet_settings: Settings, store: Store, client: TestClient, tmp_path: Path
) -> None:
    # 2,000 photos: decoding them takes seconds, time enough to kill the worker midway.
    photos = copy_flowers_slice(fleet_settings.data_roots[0] / "many-flowers", per_class=400)
    search_id = submit(client, fleet_body(photos, max_trials=2))["id"]
    with workers(fleet_settings, tmp_path, 2) as fleet:

        def decoding() -> DataStepRecord | None:
            step = data_step(store, search_id)
            assert step.state != DataStepState.READY, "prepared before it could be killed"
            return step if step.state == DataStepState.PREPARING and step.images_decoded else None

        killed = wait_until(decoding, 300, "a worker decoding the photos", 0.05)
        victim = worker_process(fleet, store, str(killed.worker_id))
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        search = finished(store, search_id)
    assert search.status == SearchStatus.SUCCEEDED, logs(tmp_path)
    step = data_step(store, search_id)
    assert (step.state, step.token) == (DataStepState.READY, 2), "claimed again once"
    assert step.worker_id != killed.worker_id
    # The survivor decoded every photo itself (its cache was empty).
    assert step.info["decoded"] == step.info["images"] + step.info["skipped_images"] == 2000
    assert step.images_reached >= killed.images_decoded
    trials = store.list_trials(search_id)
    assert trials and {trial.worker_id for trial in trials} == {step.worker_id}


# The database plays no part in where the data is read from; the kill case runs on both.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_worker_without_the_photos_trains_on_the_prepared_data(
    fleet_settings: Settings, store: Store, client: TestClient, photos: Path, tmp_path: Path
) -> None:
    body = fleet_body(photos, max_trials=3)
    body["dataset"]["test_split"] = 0.25
    search_id = submit(client, body)["id"]
    first_host, second_host = tmp_path / "first-host", tmp_path / "second-host"

    def prepared() -> bool:
        return data_step(store, search_id).state == DataStepState.READY

    with workers(fleet_settings, first_host, 1):
        wait_until(prepared, 300, "the search's data to be prepared", 0.1)
    # Stopped: its trial goes to the second worker, on a host where the photos are not, whose
    # data roots do not hold them, and whose cache folder is its own.
    photos.rename(tmp_path / "photos-unmounted")
    with workers(without_photos(fleet_settings, tmp_path), second_host, 1) as (second,):
        search = finished(store, search_id)
    assert search.status == SearchStatus.SUCCEEDED, logs(tmp_path)
    caches = [first_host / "cache-0", second_host / "cache-0"]
    assert_prepared_once(store, fleet_settings, search_id, caches, caches[0])
    trials = store.list_trials(search_id)
    (record,) = [worker for worker in store.list_workers() if worker.pid == second.pid]
    assert any(trial.worker_id == record.id for trial in trials), "the second worker trained"
    assert search.attempts[-1].worker_id == record.id, "and took the finishing step"
    (model,) = store.list_models(search_id)
    assert model.test_accuracy is not None, "tested on the prepared test photos"


# As above; the store's side runs on both databases in tests/integration/test_data_steps.py.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_worker_without_the_photos_waits_for_one_with_them_and_trains_too(
    fleet_settings: Settings, store: Store, client: TestClient, photos: Path, tmp_path: Path
) -> None:
    # A lease: the time a worker that can read the photos has to start, once the first noted
    # that it cannot, before the search fails.
    settings = fleet_settings.model_copy(update={"lease_seconds": 10.0})
    search_id = submit(client, fleet_body(photos, max_trials=3))["id"]
    first_host, second_host = tmp_path / "first-host", tmp_path / "second-host"

    def noted() -> tuple[str, ...]:
        return data_step(store, search_id).unreadable_by

    with workers(without_photos(settings, tmp_path), first_host, 1):
        (first,) = wait_until(noted, 120, "the first worker to note it cannot read them", 0.1)
        assert data_step(store, search_id).state == DataStepState.PENDING, "nor claimed them"
        with workers(settings, second_host, 1):
            search = finished(store, search_id)
    assert search.status == SearchStatus.SUCCEEDED, logs(tmp_path)
    caches = [first_host / "cache-0", second_host / "cache-0"]
    step = assert_prepared_once(store, settings, search_id, caches, caches[1])
    assert step.worker_id != first and step.unreadable_by == (first,)
    trials = store.list_trials(search_id)
    assert first in {trial.worker_id for trial in trials}, "it trained on the prepared data"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_search_whose_photos_no_live_worker_can_read_fails_saying_so(
    fleet_settings: Settings, store: Store, client: TestClient, photos: Path, tmp_path: Path
) -> None:
    search_id = submit(client, fleet_body(photos, max_trials=3))["id"]
    with workers(without_photos(fleet_settings, tmp_path), tmp_path, 1):
        search = finished(store, search_id, timeout=60)
    path = search.spec["dataset"]["path"]
    error = (
        f"DatasetError: no live worker can read dataset.path {path} inside its data roots "
        f"(NAS_DATA_ROOTS); hosts that cannot: {socket.gethostname()}"
    )
    assert (search.status, search.error) == (SearchStatus.FAILED, error), logs(tmp_path)
    step = data_step(store, search_id)
    assert (step.state, step.error, step.token) == (DataStepState.FAILED, error, 0)
    assert not decoded_in(tmp_path / "cache-0")
    assert store.list_trials(search_id) == []


# The scheduling it shows is the same on both databases; PostgreSQL's locking is shown by
# the kill and three-worker cases.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_two_searches_share_two_workers_of_two_slots(
    fleet_settings: Settings, store: Store, client: TestClient, photos: Path, tmp_path: Path
) -> None:
    first = submit(client, fleet_body(photos, max_trials=6, epochs=2))["id"]
    second = submit(client, fleet_body(photos, max_trials=6, epochs=2, seed=6))["id"]
    with workers(fleet_settings, tmp_path, 2, parallel_trials=2):

        def both_running() -> bool:
            running = {
                search_id
                for search_id in (first, second)
                for trial in store.list_trials(search_id)
                if trial.status == TrialStatus.RUNNING
            }
            return running == {first, second}

        wait_until(both_running, 300, "trials of both searches at once", 0.2)
        searches = [finished(store, search_id) for search_id in (first, second)]
    assert [search.status for search in searches] == [SearchStatus.SUCCEEDED] * 2, logs(tmp_path)


BUDGET_SECONDS = 45


# The scheduling it shows is the same on both databases; PostgreSQL's locking is shown by
# the kill and three-worker cases.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_time_budget_holds_across_three_workers(
    fleet_settings: Settings, store: Store, client: TestClient, photos: Path, tmp_path: Path
) -> None:
    # 30 trials of 100 epochs: only the budget ends this search, mid-trial on every worker.
    body = fleet_body(
        photos, algorithm="random", max_trials=30, epochs=100, patience=0, pruning=False
    )
    body |= {"budget": {"seconds": BUDGET_SECONDS}, "final_top_k": 0}
    search_id = submit(client, body)["id"]
    with workers(fleet_settings, tmp_path, 3):
        search = finished(store, search_id)
    assert search.status == SearchStatus.SUCCEEDED, logs(tmp_path)
    assert search.ended_by == "budget"
    trials = store.list_trials(search_id)
    assert len({trial.worker_id for trial in trials}) == 3
    assert search.started_at is not None
    last_end = max(trial.finished_at for trial in trials if trial.finished_at is not None)
    longest_epoch = max(epoch["epoch_seconds"] for trial in trials for epoch in trial.history)
    overrun = (last_end - search.started_at).total_seconds() - BUDGET_SECONDS
    # Every worker reads the same clock (the search's first start) and stops its trial at a
    # batch boundary past it: within the epoch it is in, plus its validation and writes.
    assert overrun <= longest_epoch + 2.0, (overrun, longest_epoch)
    last = max(trials, key=lambda trial: trial.finished_at or search.started_at)
    assert last.stop_reason == f"the search's budget of {BUDGET_SECONDS} s ran out"
