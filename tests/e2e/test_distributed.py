"""One search spread over several workers, each with its own cache and id as on its own host,
sharing only the database and the artifacts folder: real worker processes, real photos."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from nas.cli.launcher import settings_env, start_nas, stop_process, wait_until
from nas.core.settings import Settings
from nas.core.store import SearchRecord, SearchStatus, Store, TrialStatus
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
    """``count`` workers, each with its own cache folder (as on its own host); stopped after."""
    started = []
    for number in range(count):
        own = settings.model_copy(update={"cache_dir": tmp_path / f"cache-{number}", **overrides})
        started.append(start_nas(["worker"], settings_env(own), tmp_path / f"worker-{number}.log"))
    try:
        yield started
    finally:
        for worker in started:
            assert stop_process(worker) == 0


def finished(store: Store, search_id: str, timeout: float = 600) -> SearchRecord:
    def done() -> SearchRecord | None:
        search = store.get_search(search_id)
        return search if search is not None and search.status.terminal else None

    return wait_until(done, timeout, f"search {search_id} to finish", 0.5)


def logs(tmp_path: Path) -> str:
    return "\n".join(path.read_text()[-3000:] for path in sorted(tmp_path.glob("worker-*.log")))


@pytest.mark.parametrize("algorithm", ["random", "bayesian", "hyperband"])
def test_three_workers_share_one_search(
    algorithm: str,
    database_url: str,
    fleet_settings: Settings,
    store: Store,
    client: TestClient,
    photos: Path,
    tmp_path: Path,
) -> None:
    if algorithm != "random" and database_url.startswith("postgresql"):
        pytest.skip("the oracle's steps do not depend on the database; SQLite covers them")
    tuner = {"hyperband_factor": 3, "epochs": 3} if algorithm == "hyperband" else {}
    search_id = submit(client, fleet_body(photos, algorithm=algorithm, **tuner))["id"]
    with workers(fleet_settings, tmp_path, 3):
        search = finished(store, search_id)
    assert search.status == SearchStatus.SUCCEEDED, logs(tmp_path)
    trials = store.list_trials(search_id)
    assert len(trials) == search.trials_planned, "each planned trial once"
    assert all(trial.status == TrialStatus.COMPLETED for trial in trials)
    ran = Counter(trial.worker_id for trial in trials)
    assert len(ran) == 3, f"each worker ran some trials: {ran}"
    assert all(trial.hostname and trial.accelerator for trial in trials)
    assert store.list_models(search_id), "the best model was exported"
    board = client.get(f"/v1/searches/{search_id}/leaderboard").json()["trials"]
    assert {trial["worker_id"] for trial in board} == set(ran)
