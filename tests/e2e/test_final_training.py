"""The best architecture trained to the end: once exploration ends, the top trial's architecture
trains again from scratch on the training and validation photos together, and that model is
the one exported and tested (issue 14)."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pytest

from nas.cli.launcher import settings_env, start_nas, stop_process
from nas.core.artifacts import SearchArtifacts
from nas.core.settings import Settings
from nas.core.store import Store, TrialRecord, TrialStatus
from tests.support.live import cli_token, live_api, wait_for_status


def trial_with(history: list[dict[str, float]], **hyperparameters: object) -> TrialRecord:
    now = datetime.now(UTC)
    return TrialRecord(
        search_id="s",
        trial_id="t",
        status=TrialStatus.COMPLETED,
        hyperparameters=dict(hyperparameters),
        score=0.5,
        params=1000,
        epochs=len(history),
        seconds=sum(epoch["epoch_seconds"] for epoch in history),
        history=tuple(history),
        error=None,
        started_at=now,
        finished_at=now,
    )


def test_the_epochs_of_a_final_training_fit_the_time_left() -> None:
    from nas.worker.final_training import final_epochs, seconds_per_epoch

    # The first epoch compiles; past it, 4 s on 80 photos, so 5 s on 100.
    trial = trial_with([{"epoch_seconds": 10.0}, {"epoch_seconds": 4.0}, {"epoch_seconds": 4.0}])
    epoch_seconds = seconds_per_epoch(trial, trial_images=80, final_images=100)
    assert epoch_seconds == pytest.approx(5.0)

    assert final_epochs(trial, remaining_seconds=None, epoch_seconds=epoch_seconds) == 3
    assert final_epochs(trial, remaining_seconds=23.0, epoch_seconds=epoch_seconds) == 4
    assert final_epochs(trial, remaining_seconds=4.0, epoch_seconds=epoch_seconds) == 0
    # A Hyperband trial trained tuner/epochs in all, over several rounds.
    resumed = trial_with([{"epoch_seconds": 4.0}], **{"tuner/epochs": 9})
    assert final_epochs(resumed, remaining_seconds=None, epoch_seconds=4.0) == 9
    assert seconds_per_epoch(trial_with([]), trial_images=80, final_images=100) is None


def conv_kernels_of_keras_file(data: bytes) -> list[np.ndarray]:
    """The 4-D weights (convolution kernels) of a downloaded .keras file."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        weights = io.BytesIO(archive.read("model.weights.h5"))
    return kernels_in_h5(weights)


def kernels_in_h5(source: Path | io.BytesIO) -> list[np.ndarray]:
    found: list[np.ndarray] = []
    with h5py.File(source, "r") as weights:

        def collect(name: str, item: object) -> None:
            # The optimizer's moments of a kernel have its shape too.
            if isinstance(item, h5py.Dataset) and item.ndim == 4 and "optimizer" not in name:
                found.append(np.asarray(item))

        weights.visititems(collect)
    return found


def shared(kernels: list[np.ndarray], others: list[np.ndarray]) -> int:
    """How many of ``kernels`` appear, value for value, among ``others``."""
    return sum(any(np.array_equal(kernel, other) for other in others) for kernel in kernels)


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_final_training_runs_on_train_and_validation_and_its_model_is_exported(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    token = cli_token(settings, "finisher")
    with live_api(settings, logs, token) as api:
        submitted = api.post(
            "/v1/searches",
            json={
                "dataset": {
                    "path": str(settings.data_roots[0] / "flowers"),
                    "image_size": 32,
                    "test_split": 0.25,
                },
                "space": {"version": 2, "hyperparameters": {"conv_blocks": {"fixed": 2}}},
                "tuner": {"max_trials": 2, "epochs": 2, "batch_size": 16, "seed": 3},
                "export_top_k": 2,
                # The models in score order (the defaults get no head start).
                "defaults_margin": 0,
            },
        )
        assert submitted.status_code == 201, submitted.text
        search_id = submitted.json()["id"]
        worker = start_nas(["worker"], settings_env(settings), logs / "worker.log")
        try:
            done = wait_for_status(api, search_id, {"succeeded", "failed", "cancelled"}, 600)
        finally:
            assert stop_process(worker) == 0
        assert done["status"] == "succeeded", (logs / "worker.log").read_text()[-4000:]
        board = api.get(f"/v1/searches/{search_id}/leaderboard").json()["trials"]
        table = list(
            csv.DictReader(io.StringIO(api.get(f"/v1/searches/{search_id}/leaderboard.csv").text))
        )
        models = api.get(f"/v1/searches/{search_id}/models").json()["models"]
        exported = [
            api.get(f"/v1/searches/{search_id}/models/{rank}/keras").content for rank in (1, 2)
        ]

    best, runner_up = board
    photos = done["dataset"]
    # 12 photos of each of 5 classes: 3 held out for the test, 2 of the other 9 validate.
    assert (photos["train_images"], photos["validation_images"]) == (35, 10)
    [final] = done["final_training"]
    assert final["trial_id"] == best["trial_id"] and final["rank"] == 1
    assert final["images"] == photos["train_images"] + photos["validation_images"]
    assert final["epochs"] == best["epochs"] == 2
    assert final["error"] is None and final["seconds"] > 0
    assert final["test_accuracy"] is not None and 0.0 <= final["test_accuracy"] <= 1.0

    # Its model is the one exported and tested as rank 1; rank 2 is its trial's own model.
    assert [model["trial_id"] for model in models] == [best["trial_id"], runner_up["trial_id"]]
    assert models[0]["test_accuracy"] == final["test_accuracy"]
    assert best["score"] is not None
    assert (best["test_accuracy"], best["final_epochs"]) == (final["test_accuracy"], 2)
    assert runner_up["final_epochs"] is None and runner_up["test_accuracy"] is not None
    assert (table[0]["test_accuracy"], table[0]["final_epochs"]) == (
        str(final["test_accuracy"]),
        "2",
    )
    assert done["best_trial"]["final_epochs"] == 2

    tuner_dir = SearchArtifacts(settings.artifacts_dir, search_id).tuner_dir
    checkpoints = [
        kernels_in_h5(tuner_dir / f"trial_{trial['trial_id']}" / "checkpoint.weights.h5")
        for trial in (best, runner_up)
    ]
    final_kernels, runner_up_kernels = map(conv_kernels_of_keras_file, exported)
    assert len(final_kernels) == len(checkpoints[0]) >= 2  # the same two-block architecture
    # Trained again from scratch: not one kernel of the best trial's checkpoint survives...
    assert shared(final_kernels, checkpoints[0]) == 0
    # ...while the runner-up, not trained to the end, is its trial's checkpoint as it was.
    assert shared(runner_up_kernels, checkpoints[1]) == len(runner_up_kernels) >= 2
