"""The product end to end: real HTTP API, real worker process, real training on real photos."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nas.cli.launcher import settings_env, start_nas, stop_process
from nas.core.settings import Settings
from nas.core.store import Store
from tests.support.flowers import FLOWERS, copy_flowers_slice
from tests.support.live import cli_token, live_api, wait_for_status
from tests.support.owners import bearer, secret_part

pytestmark = pytest.mark.slow

IMAGE_SIZE = 32
HELD_OUT_PER_CLASS = 3


def held_out_photos(per_class_used: int) -> tuple[np.ndarray, list[str]]:
    """Photos that come after the training slice in each class folder (no trial saw them)."""
    from nas.worker.datasets import crop_to_fill

    images, classes = [], []
    for folder in sorted(path for path in FLOWERS.iterdir() if path.is_dir()):
        photos = sorted(folder.glob("*.jpg"))[per_class_used : per_class_used + HELD_OUT_PER_CLASS]
        for photo in photos:
            with Image.open(photo) as image:
                images.append(crop_to_fill(image, IMAGE_SIZE))
            classes.append(folder.name)
    return np.stack(images).astype("float32"), classes


def test_search_end_to_end(settings: Settings, store: Store, tmp_path: Path) -> None:
    root = settings.data_roots[0]
    photos = copy_flowers_slice(root / "e2e-flowers", per_class=20)
    (photos / "roses" / "zz-corrupt.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    doomed = copy_flowers_slice(root / "e2e-doomed", per_class=3, classes=2)
    logs = tmp_path / "logs"
    logs.mkdir()
    token, other_token = cli_token(settings, "e2e"), cli_token(settings, "someone-else")
    with live_api(settings, logs, token) as api:
        assert api.get("/v1/searches", headers={"Authorization": ""}).status_code == 401
        failing = api.post(
            "/v1/searches",
            json={
                "dataset": {"path": str(doomed), "image_size": IMAGE_SIZE},
                "space": {"max_conv_blocks": 2},
                "tuner": {"max_trials": 1, "epochs": 1},
            },
        )
        assert failing.status_code == 201, failing.text
        shutil.rmtree(doomed)  # the data vanishes between submit and run
        submitted = api.post(
            "/v1/searches",
            json={
                "dataset": {"path": str(photos), "image_size": IMAGE_SIZE},
                "space": {"min_conv_blocks": 2, "max_conv_blocks": 3, "filters": [16, 32]},
                "tuner": {"max_trials": 2, "epochs": 1, "batch_size": 16, "seed": 7},
                "export_top_k": 2,
                # The models in score order (the defaults get no head start).
                "defaults_margin": 0,
            },
        )
        assert submitted.status_code == 201, submitted.text
        search_id = submitted.json()["id"]
        assert submitted.json()["status"] == "queued"

        worker = start_nas(["worker"], settings_env(settings), logs / "worker.log")
        try:
            failed = wait_for_status(api, failing.json()["id"], {"failed", "succeeded"}, 120)
            done = wait_for_status(api, search_id, {"succeeded", "failed"}, 300)
            assert worker.poll() is None, "a failed search must not take the worker down"
        finally:
            assert stop_process(worker) == 0
        assert failed["status"] == "failed"
        assert "DatasetError" in failed["error"] and "e2e-doomed" in failed["error"]
        assert done["status"] == "succeeded", (logs / "worker.log").read_text()[-4000:]
        assert done["trials_done"] == done["trials_planned"] == 2
        assert done["accelerator"]["strategy"] == "_DefaultDistributionStrategy"
        assert done["accelerator"]["replicas"] == 1
        assert done["precision"] in {"float32", "mixed_bfloat16"}
        assert done["dataset"]["class_names"] == sorted(p.name for p in FLOWERS.iterdir())
        assert done["dataset"]["train_images"] + done["dataset"]["validation_images"] == 100
        assert done["dataset"]["skipped_images"] == 1
        assert done["dataset"]["skipped_files"] == ["roses/zz-corrupt.jpg"]

        board = api.get(f"/v1/searches/{search_id}/leaderboard").json()
        assert [trial["rank"] for trial in board["trials"]] == [1, 2]
        scores = [trial["score"] for trial in board["trials"]]
        assert scores == sorted(scores, reverse=True)
        for trial in board["trials"]:
            assert trial["status"] == "completed"
            assert trial["params"] > 0 and trial["seconds"] > 0 and trial["epochs"] == 1
            assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= trial["history"][0].keys()
            assert trial["hyperparameters"]["conv_blocks"] in {2, 3}
        assert done["best_trial"]["trial_id"] == board["trials"][0]["trial_id"]

        models = api.get(f"/v1/searches/{search_id}/models").json()["models"]
        assert [model["rank"] for model in models] == [1, 2]
        assert models[0]["trial_id"] == board["trials"][0]["trial_id"]
        summary = api.get(f"/v1/searches/{search_id}/models/1/summary")
        assert summary.status_code == 200 and "Total params" in summary.text
        keras_file = api.get(f"/v1/searches/{search_id}/models/1/keras")
        assert keras_file.status_code == 200 and keras_file.content[:2] == b"PK"
        tarball = api.get(f"/v1/searches/{search_id}/models/1/savedmodel")
        assert tarball.status_code == 200
        assert tarball.headers["content-type"] == "application/gzip"
        for path in ("", "/leaderboard", "/models", "/models/1/keras", "/models/1/savedmodel"):
            foreign = api.get(f"/v1/searches/{search_id}{path}", headers=bearer(other_token))
            assert foreign.status_code == 404, path

    for log in logs.iterdir():
        for secret in (token, other_token):
            assert secret_part(secret) not in log.read_text(), log.name

    export_dir = tmp_path / "download"
    with tarfile.open(fileobj=io.BytesIO(tarball.content), mode="r:gz") as archive:
        archive.extractall(export_dir, filter="data")
    savedmodel = export_dir / "savedmodel"
    class_names = json.loads((savedmodel / "assets.extra" / "class_names.json").read_text())
    assert class_names == done["dataset"]["class_names"]

    import tensorflow as tf

    loaded = tf.saved_model.load(str(savedmodel))
    images, _truth = held_out_photos(per_class_used=20)
    result = loaded.classify(tf.constant(images))
    names = [name.decode() for name in result["class_name"].numpy()]
    assert len(names) == len(images) and set(names) <= set(class_names)
    probabilities = loaded.serve(tf.constant(images)).numpy()
    assert probabilities.shape == (len(images), 5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-3)
    np.testing.assert_array_equal(probabilities.argmax(axis=1), result["class_index"].numpy())
