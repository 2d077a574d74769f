"""The JAX worker where TensorFlow is not installed, as on a GPU machine with JAX alone.

A second virtual environment gets the project's own dependencies and its ``jax`` extra, not
its ``tensorflow`` one (made once, then kept under ``var/``). A real worker from it runs a
search end to end, several trials in flight, and the speed benchmark runs there tiny.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tomllib
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

from nas.cli.launcher import settings_env, stop_process, wait_until
from nas.core.settings import Settings
from nas.core.store import create_store, migrate
from tests.support.flowers import copy_flowers_slice
from tests.support.live import cli_token, live_api, wait_for_status

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
IMAGE_SIZE = 32
V2_CORNER = {
    "conv_blocks": {"fixed": 2},
    "base_filters": {"fixed": 16},
    "lr_schedule": {"fixed": "cosine"},
    "batch_norm": {"fixed": True},
    "augmentation": {"fixed": True},
    "label_smoothing": {"fixed": 0.1},
    "head": {"values": ["gap", "gap_dense"]},
}


def jax_requirements() -> list[str]:
    """The project's dependencies plus its ``jax`` extra, as pyproject.toml declares them."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["jax"]]


@pytest.fixture(scope="session")
def jax_python() -> Path:
    """The Python of a virtual environment with JAX and without TensorFlow."""
    requirements = jax_requirements()
    key = hashlib.sha256(json.dumps([sys.version, requirements]).encode()).hexdigest()[:12]
    venv = REPO / "var" / "test-venvs" / f"jax-{key}"
    python = venv / "bin" / "python"
    ready = venv / ".ready"
    if not ready.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *requirements], check=True, timeout=600
        )
        ready.touch()
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util as u; print(u.find_spec('tensorflow'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "None", "TensorFlow got into the JAX environment"
    return python


def project_env(settings: Settings) -> dict[str, str]:
    """The settings' environment, with the project importable from this checkout only."""
    return settings_env(settings) | {"PYTHONPATH": str(REPO), "KERAS_BACKEND": "jax"}


def overlap(first: dict, second: dict) -> bool:
    def span(trial: dict) -> tuple[datetime, datetime]:
        return (
            datetime.fromisoformat(trial["started_at"]),
            datetime.fromisoformat(trial["finished_at"]),
        )

    (start_a, end_a), (start_b, end_b) = span(first), span(second)
    return start_a < end_b and start_b < end_a


def test_jax_worker_without_tensorflow(jax_python: Path, data_root: Path, tmp_path: Path) -> None:
    photos = copy_flowers_slice(data_root / "jax-flowers", per_class=10)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'nas.db'}",
        artifacts_dir=tmp_path / "artifacts",
        cache_dir=tmp_path / "cache",
        data_roots=[data_root],
        heartbeat_seconds=1.0,
        lease_seconds=30.0,
        poll_interval_seconds=0.2,
        backend="jax",
        parallel_trials=2,
    )
    store = create_store(settings.database_url)
    migrate(store.engine)
    store.dispose()
    logs = tmp_path / "logs"
    logs.mkdir()
    with live_api(settings, logs, cli_token(settings, "jax-user")) as api:
        submitted = api.post(
            "/v1/searches",
            json={
                "dataset": {"path": str(photos), "image_size": IMAGE_SIZE},
                "space": {"min_conv_blocks": 1, "max_conv_blocks": 2, "filters": [8, 16]},
                "tuner": {
                    "max_trials": 2,
                    "epochs": 2,
                    "batch_size": 16,
                    "seed": 3,
                    "precision": "mixed_bfloat16",
                },
                "export_top_k": 1,
            },
        )
        assert submitted.status_code == 201, submitted.text
        search_id = submitted.json()["id"]
        with (logs / "worker.log").open("wb") as log:
            worker = subprocess.Popen(
                [str(jax_python), "-m", "nas", "worker"],
                env=project_env(settings),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            # The first search alone takes both slots; a later one gets a slot after a trial.
            board_url = f"/v1/searches/{search_id}/leaderboard"
            wait_until(
                lambda: len(api.get(board_url).json()["trials"]) >= 2,
                300,
                "both trials of the first search to start",
            )
            # Version 2 of the space too, with the parts that differ by backend switched on:
            # augmentation layers, batch normalization, label smoothing, a decaying learning rate.
            submitted_v2 = api.post(
                "/v1/searches",
                json={
                    "dataset": {"path": str(photos), "image_size": IMAGE_SIZE},
                    "space": {"version": 2, "hyperparameters": V2_CORNER},
                    "tuner": {"max_trials": 2, "epochs": 2, "batch_size": 16, "seed": 3},
                    "export_top_k": 1,
                },
            )
            assert submitted_v2.status_code == 201, submitted_v2.text
            v2_search_id = submitted_v2.json()["id"]
            done = wait_for_status(api, search_id, {"succeeded", "failed"}, 400)
            done_v2 = wait_for_status(api, v2_search_id, {"succeeded", "failed"}, 400)
        finally:
            assert stop_process(worker) == 0
        worker_log = (logs / "worker.log").read_text()
        assert done["status"] == "succeeded", worker_log[-4000:]
        assert done["trials_done"] == 2
        assert done["accelerator"]["backend"] == "jax"
        assert done["accelerator"]["platform"] == "cpu"
        assert done["precision"] == "mixed_bfloat16"
        assert "2 slot(s)" in worker_log

        board = api.get(f"/v1/searches/{search_id}/leaderboard").json()["trials"]
        assert [trial["status"] for trial in board] == ["completed", "completed"]
        assert overlap(*board), "the two trials should have been in flight together"
        for trial in board:
            assert all(epoch["epoch_seconds"] > 0 for epoch in trial["history"])

        models = api.get(f"/v1/searches/{search_id}/models").json()["models"]
        assert [model["formats"] for model in models] == [["keras"]]
        assert "savedmodel" not in models[0]["links"]
        savedmodel = api.get(f"/v1/searches/{search_id}/models/1/savedmodel")
        assert savedmodel.status_code == 404
        assert "needs TensorFlow on the worker" in savedmodel.json()["detail"]
        keras_file = api.get(f"/v1/searches/{search_id}/models/1/keras")
        assert keras_file.status_code == 200
        summary = api.get(f"/v1/searches/{search_id}/models/1/summary")
        assert summary.status_code == 200 and "Total params" in summary.text

        assert done_v2["status"] == "succeeded", worker_log[-4000:]
        assert done_v2["trials_done"] == 2
        v2_file = api.get(f"/v1/searches/{v2_search_id}/models/1/keras")
        assert v2_file.status_code == 200

    # The trials trained in the precision asked for, not in the float32 that KerasTuner's
    # clear_session() before each build would have left.
    with zipfile.ZipFile(io.BytesIO(keras_file.content)) as archive:
        config = json.loads(archive.read("config.json"))
    policies = {
        layer["config"]["dtype"]["config"]["name"]
        for layer in config["config"]["layers"]
        if layer["class_name"] == "Conv2D"
    }
    assert policies == {"mixed_bfloat16"}

    # The exported version 2 model keeps its batch normalization and drops the augmentation
    # it trained with.
    with zipfile.ZipFile(io.BytesIO(v2_file.content)) as archive:
        v2_config = json.loads(archive.read("config.json"))
    v2_layers = json.dumps(v2_config)
    assert "BatchNormalization" in v2_layers
    assert "RandomFlip" not in v2_layers and "RandomRotation" not in v2_layers


def test_speed_benchmark_runs_tiny(jax_python: Path, data_root: Path, tmp_path: Path) -> None:
    photos = copy_flowers_slice(data_root / "benchmark-flowers", per_class=8)
    result_file = tmp_path / "result.json"
    run = subprocess.run(
        [
            str(jax_python),
            "-m",
            "benchmarks.speed_vs_keras_tuner",
            str(photos),
            "--backend=jax",
            "--image-size=32",
            "--trials=2",
            "--epochs=2",
            "--batch-size=16",
            "--parallel-trials=2",
            f"--json={result_file}",
        ],
        cwd=REPO,
        env=os.environ | {"PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for row in (
        "wall seconds",
        "wall / plain wall",
        "seconds per trial",
        "steady images/s",
        "compile s per trial",
        "best val_accuracy",
    ):
        assert row in run.stdout

    outcome = json.loads(result_file.read_text())
    plain, service = outcome["results"]
    assert plain["name"] == "plain KerasTuner"
    assert service["details"]["parallel_trials"] == 2
    assert service["details"]["accelerator"]["backend"] == "jax"
    for result in (plain, service):
        assert result["wall_seconds"] > 0
        assert len(result["epoch_seconds"]) == 2
        assert all(len(epochs) == 2 for epochs in result["epoch_seconds"])
        # The first epoch of each trial compiles its steps; the second does not.
        assert all(first > second > 0 for first, second in result["epoch_seconds"])
        assert 0.0 <= result["best_val_accuracy"] <= 1.0
    ratio = service["wall_seconds"] / plain["wall_seconds"]
    assert f"{ratio:.3f}" in run.stdout
