"""Nothing lost: real worker processes killed, stopped and cancelled mid-trial."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from nas.cli.launcher import settings_env, start_nas, stop_process, wait_until
from nas.core.settings import Settings
from nas.core.store import SearchStatus, Store, TrialRecord, TrialStatus
from tests.support.factories import MINIMAL_SPACE, search_body, submit
from tests.support.flowers import copy_flowers_slice

pytestmark = pytest.mark.slow


@pytest.fixture
def fault_settings(settings: Settings) -> Settings:
    """Short leases, so a dead worker's search is re-claimed within seconds."""
    return settings.model_copy(
        update={"heartbeat_seconds": 0.5, "lease_seconds": 3.0, "cancel_grace_seconds": 2.0}
    )


def submit_search(
    client: TestClient, photos: Path, algorithm: str = "random", trials: int = 3, **tuner: Any
) -> str:
    body = search_body(
        photos,
        space={**MINIMAL_SPACE, "filters": [16, 32]},
        tuner={
            "algorithm": algorithm,
            "max_trials": trials,
            "epochs": 8,
            "batch_size": 16,
            "seed": 3,
            **tuner,
        },
        export_top_k=1,
    )
    return submit(client, body)["id"]


@pytest.fixture
def photos(fault_settings: Settings) -> Path:
    return copy_flowers_slice(fault_settings.data_roots[0] / "fault-flowers", per_class=16)


def start_worker(settings: Settings, logs: Path, name: str) -> subprocess.Popen[bytes]:
    return start_nas(["worker"], settings_env(settings), logs / f"{name}.log")


def mid_trial(store: Store, search_id: str) -> list[TrialRecord] | None:
    """The completed trials, once one trial is done and the next has trained an epoch."""
    search = store.get_search(search_id)
    assert search is not None and not search.status.terminal, f"search ended early: {search}"
    trials = store.list_trials(search_id)
    completed = [trial for trial in trials if trial.status == TrialStatus.COMPLETED]
    running = [t for t in trials if t.status == TrialStatus.RUNNING and t.epochs >= 1]
    return completed if completed and running else None


def finished(store: Store, search_id: str, timeout: float = 240) -> Any:
    def done() -> Any:
        search = store.get_search(search_id)
        return search if search and search.status.terminal else None

    return wait_until(done, timeout, f"search {search_id} to finish")


def assert_resumed_completely(store: Store, search_id: str, before: list[TrialRecord]) -> None:
    search = store.get_search(search_id)
    assert search is not None and search.status == SearchStatus.SUCCEEDED, search
    trials = store.list_trials(search_id)
    assert len(trials) == search.trials_planned, "every planned trial exactly once"
    assert len({trial.trial_id for trial in trials}) == len(trials)
    assert all(trial.status == TrialStatus.COMPLETED for trial in trials)
    now = {trial.trial_id: trial for trial in trials}
    for trial in before:
        assert now[trial.trial_id] == trial, "a trial finished before the fault changed"
    assert store.list_models(search_id), "the best model was exported"


def logs_dir(tmp_path: Path) -> Path:
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    return logs


@pytest.mark.parametrize("parallel_trials", [1, 2])
def test_sigkill_mid_trial_is_resumed_by_another_worker(
    parallel_trials: int,
    fault_settings: Settings,
    store: Store,
    client: TestClient,
    photos: Path,
    tmp_path: Path,
) -> None:
    fault_settings = fault_settings.model_copy(update={"parallel_trials": parallel_trials})
    logs = logs_dir(tmp_path)
    search_id = submit_search(client, photos, trials=2 * parallel_trials + 1)
    first = start_worker(fault_settings, logs, "first")
    before = wait_until(lambda: mid_trial(store, search_id), 180, "a trial in progress", 0.1)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    second = start_worker(fault_settings, logs, "second")
    try:
        finished(store, search_id)
    finally:
        assert stop_process(second) == 0
    assert_resumed_completely(store, search_id, before)
    search = store.get_search(search_id)
    assert search is not None
    # The finishing step was the second worker's alone: the first died before it.
    assert [attempt.outcome.value for attempt in search.attempts] == ["succeeded"]
    # Its own finishing process closing the search is not a lost lease.
    assert "lost its lease" not in (logs / "second.log").read_text()
    board = client.get(f"/v1/searches/{search_id}/leaderboard").json()["trials"]
    assert sorted(trial["trial_id"] for trial in board) == sorted(
        trial.trial_id for trial in store.list_trials(search_id)
    )


RESUMED_EPOCHS = 10


# The resume is the tuner's and the artifacts'; the store's part runs on both databases in
# tests/integration/test_store.py.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_trial_whose_worker_is_killed_goes_on_from_its_last_backed_up_epoch(
    fault_settings: Settings, store: Store, client: TestClient, photos: Path, tmp_path: Path
) -> None:
    logs = logs_dir(tmp_path)
    body = search_body(
        photos,
        space={**MINIMAL_SPACE, "filters": [16, 32]},
        tuner={
            "algorithm": "random",
            "max_trials": 2,
            "epochs": RESUMED_EPOCHS,
            "batch_size": 16,
            "seed": 3,
            "patience": 0,
            "pruning": False,
        },
        export_top_k=1,
        final_top_k=0,
    )
    search_id = submit(client, body)["id"]
    first = start_worker(fault_settings, logs, "first")

    def two_epochs_in() -> TrialRecord | None:
        trials = store.list_trials(search_id)
        running = [t for t in trials if t.status == TrialStatus.RUNNING and t.epochs >= 2]
        return running[0] if running else None

    before = wait_until(two_epochs_in, 180, "a trial two epochs in", 0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed_at = datetime.now(UTC)
    second = start_worker(fault_settings, logs, "second")
    try:
        search = finished(store, search_id)
    finally:
        assert stop_process(second) == 0
    assert search.status == SearchStatus.SUCCEEDED, (logs / "second.log").read_text()[-3000:]
    trials = {trial.trial_id: trial for trial in store.list_trials(search_id)}
    assert len(trials) == search.trials_planned == 2, "each trial once"
    assert all(trial.status == TrialStatus.COMPLETED for trial in trials.values())
    resumed = trials[before.trial_id]
    assert resumed.worker_id != before.worker_id and resumed.started_at > killed_at
    # Its backup is written once the journal recorded the epoch: it holds all the epochs the
    # store had at the kill (the two or more seen, or any recorded since), or one fewer.
    (at,) = resumed.resumed_at_epochs
    assert at >= max(before.epochs - 1, 1)
    # Those epochs are the first worker's, untouched (a retrained epoch 0 would have another
    # time and other metrics); the second worker trained only the rest.
    seen = min(at, before.epochs)
    assert resumed.history[:seen] == before.history[:seen]
    assert resumed.epochs == RESUMED_EPOCHS
    assert f"trial {before.trial_id} resumes at epoch {at}" in (logs / "second.log").read_text()
    board = client.get(f"/v1/searches/{search_id}/leaderboard").json()["trials"]
    shown = {trial["trial_id"]: trial["resumed_at_epochs"] for trial in board}
    assert shown == {trial_id: list(trial.resumed_at_epochs) for trial_id, trial in trials.items()}
    assert store.list_models(search_id), "the best model was exported"


@pytest.mark.parametrize("algorithm", ["asha", "random", "bayesian", "hyperband"])
def test_sigterm_gives_the_search_back_and_it_resumes(
    algorithm: str,
    database_url: str,
    fault_settings: Settings,
    store: Store,
    client: TestClient,
    photos: Path,
    tmp_path: Path,
) -> None:
    if algorithm != "random" and database_url.startswith("postgresql"):
        pytest.skip("the tuner's resume does not depend on the database; SQLite covers it")
    logs = logs_dir(tmp_path)
    search_id = submit_search(client, photos, algorithm)
    first = start_worker(fault_settings, logs, "first")
    before = wait_until(lambda: mid_trial(store, search_id), 180, "a trial in progress", 0.1)
    started = time.monotonic()
    assert stop_process(first, timeout=60) == 0, (logs / "first.log").read_text()[-3000:]
    search = store.get_search(search_id)
    assert search is not None and search.status == SearchStatus.QUEUED, "given back at once"
    interrupted = [t for t in store.list_trials(search_id) if t.status == TrialStatus.INTERRUPTED]
    assert len(interrupted) == 1 and interrupted[0].lost_leases == 0, "a give-back is no loss"
    assert time.monotonic() - started < 30
    second = start_worker(fault_settings, logs, "second")
    try:
        finished(store, search_id)
    finally:
        assert stop_process(second) == 0
    assert_resumed_completely(store, search_id, before)


def test_second_sigterm_stops_at_once(
    fault_settings: Settings, store: Store, client: TestClient, photos: Path, tmp_path: Path
) -> None:
    logs = logs_dir(tmp_path)
    search_id = submit_search(client, photos)
    worker = start_worker(fault_settings, logs, "worker")
    wait_until(lambda: mid_trial(store, search_id), 180, "a trial in progress", 0.1)
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    assert time.monotonic() - started < 10
    search = store.get_search(search_id)
    assert search is not None and search.status == SearchStatus.QUEUED


def test_cancel_running_search_stops_it_and_keeps_finished_trials(
    fault_settings: Settings, store: Store, client: TestClient, photos: Path, tmp_path: Path
) -> None:
    logs = logs_dir(tmp_path)
    search_id = submit_search(client, photos, trials=6)
    worker = start_worker(fault_settings, logs, "worker")
    try:
        before = wait_until(lambda: mid_trial(store, search_id), 180, "a trial in progress", 0.1)
        asked = time.monotonic()
        response = client.post(f"/v1/searches/{search_id}/cancel")
        assert response.status_code == 202 and response.json()["cancel_requested"]

        def no_trial_running() -> bool:
            trials = store.list_trials(search_id)
            return not any(trial.status == TrialStatus.RUNNING for trial in trials)

        # Its trial stops at an epoch's end within the grace, else SIGTERM stops it; exporting
        # the best finished trials' models comes after, and takes longer on a slow machine.
        wait_until(no_trial_running, 60, "the running trial to stop", 0.1)
        assert time.monotonic() - asked < 15, "a running trial stops within 15 s"
        search = finished(store, search_id, timeout=60)
        assert search.status == SearchStatus.CANCELLED
        assert worker.poll() is None, "the worker keeps serving"
    finally:
        assert stop_process(worker) == 0
    trials = {trial.trial_id: trial for trial in store.list_trials(search_id)}
    for trial in before:
        assert trials[trial.trial_id] == trial
    assert len(trials) < 6
    assert [model.trial_id for model in store.list_models(search_id)], "best finished exported"
    assert search.final_training == (), "a cancelled search trains nothing to the end"


# The supervision does not depend on the database; SQLite covers it.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_cancel_during_the_finishing_step_exports_the_finished_trials(
    fault_settings: Settings, store: Store, client: TestClient, photos: Path, tmp_path: Path
) -> None:
    # No grace: a worker that interrupted the finishing step for the cancel would close the
    # search with nothing exported. The step stops its final training itself, and exports.
    fault_settings = fault_settings.model_copy(update={"cancel_grace_seconds": 0.0})
    logs = logs_dir(tmp_path)
    search_id = submit_search(client, photos, trials=1, epochs=30, patience=0)
    worker = start_worker(fault_settings, logs, "worker")
    try:
        wait_until(
            lambda: "started the finishing step" in (logs / "worker.log").read_text(),
            180,
            "the finishing step",
            0.1,
        )
        assert client.post(f"/v1/searches/{search_id}/cancel").status_code == 202
        search = finished(store, search_id, timeout=120)
        assert worker.poll() is None, "the worker keeps serving"
    finally:
        assert stop_process(worker) == 0
    assert search.status == SearchStatus.CANCELLED
    [trial] = store.list_trials(search_id)
    assert trial.status == TrialStatus.COMPLETED
    assert [model.trial_id for model in store.list_models(search_id)] == [trial.trial_id]
    assert "did not stop at an epoch end" not in (logs / "worker.log").read_text()


def test_cancel_queued_search_never_starts(
    fault_settings: Settings, store: Store, client: TestClient, photos: Path, tmp_path: Path
) -> None:
    search_id = submit_search(client, photos)
    assert client.post(f"/v1/searches/{search_id}/cancel").json()["status"] == "cancelled"
    worker = subprocess.run(
        [*start_args("worker", "--exit-when-idle")],
        env=settings_env(fault_settings),
        capture_output=True,
        timeout=120,
    )
    assert worker.returncode == 0
    search = store.get_search(search_id)
    assert search is not None and search.status == SearchStatus.CANCELLED and not search.attempts
    assert store.list_trials(search_id) == []


def start_args(*args: str) -> list[str]:
    from nas.cli.launcher import NAS

    return [NAS, *args]


def postgres_cluster(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True,
        timeout=120,
    )


@pytest.mark.serial
@pytest.mark.postgres
def test_postgres_restart_under_a_running_search(
    database_url: str,
    fault_settings: Settings,
    store: Store,
    client: TestClient,
    photos: Path,
    tmp_path: Path,
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("restarts the PostgreSQL server")
    logs = logs_dir(tmp_path)
    settings = fault_settings.model_copy(update={"lease_seconds": 30.0})
    search_id = submit_search(client, photos)
    worker = start_worker(settings, logs, "worker")
    try:
        wait_until(lambda: mid_trial(store, search_id), 180, "a trial in progress", 0.1)
        postgres_cluster("stop")
        try:
            for path in ("/healthz", "/v1/searches", f"/v1/searches/{search_id}/leaderboard"):
                response = client.get(path)
                assert response.status_code == 503, response.text
                assert response.json() == {"detail": "the database is unavailable; retry shortly"}
            time.sleep(3)
        finally:
            postgres_cluster("start")
        search = finished(store, search_id)
        assert search.status == SearchStatus.SUCCEEDED, (logs / "worker.log").read_text()[-4000:]
        assert worker.poll() is None
    finally:
        assert stop_process(worker) == 0
    assert len(store.list_trials(search_id)) == 3


def test_worker_that_lost_its_lease_writes_nothing_more(
    fault_settings: Settings, store: Store, client: TestClient, photos: Path, tmp_path: Path
) -> None:
    logs = logs_dir(tmp_path)
    search_id = submit_search(client, photos, max_parallel_trials=1)
    worker = start_worker(fault_settings, logs, "worker")
    try:
        wait_until(lambda: mid_trial(store, search_id), 180, "a trial in progress", 0.1)
        with store.engine.begin() as connection:  # as if its heartbeats had stopped arriving
            connection.execute(
                text("UPDATE search_slots SET lease_expires_at = :past WHERE search_id = :id"),
                {"past": datetime.now(UTC) - timedelta(minutes=1), "id": search_id},
            )
        assert store.reap_expired(max_attempts=3) == [search_id]
        # The search's one slot is another worker's now: this one may not join again.
        thief = store.join_next("thief", hostname="elsewhere", lease_seconds=600)
        assert thief is not None and thief.search_id == search_id
        trials_after_theft = store.list_trials(search_id)
        oracle = fault_settings.artifacts_dir / search_id / "tuner" / "oracle.json"
        oracle_state = oracle.read_bytes()
        time.sleep(5)
        assert worker.poll() is None, "the worker itself carries on"
    finally:
        assert stop_process(worker) == 0
    assert store.list_trials(search_id) == trials_after_theft
    assert oracle.read_bytes() == oracle_state, "no tuner state written after the lease was lost"
    search = store.get_search(search_id)
    assert search is not None and search.status == SearchStatus.RUNNING
    assert f"of search {search_id} lost" in (logs / "worker.log").read_text()
