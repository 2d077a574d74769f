"""Each dataset form end to end: real API, real worker, tiny real searches on real photos.

One worker runs them all in order, on SQLite: a folder with a test folder, the same folder
again (read from the cache) with a test split, TFRecord shards written here, shards without
a feature, and tf_flowers from a local HTTP server, first unreachable, then up. Another
runs two owners' searches on folders that differ only in their pixels.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from nas.cli.launcher import settings_env, start_nas, stop_process
from nas.core.ports import free_port
from nas.core.settings import Settings
from nas.core.specs import TF_FLOWERS_CLASSES
from nas.core.store import Store
from tests.support.factories import search_body, submit
from tests.support.flowers import copy_flowers_slice
from tests.support.http_files import ARCHIVE_NAME, flowers_archive, serve_files
from tests.support.live import cli_token, live_api, wait_for_status
from tests.support.lookalikes import imitate_folder
from tests.support.owners import bearer
from tests.support.tfrecord_shards import write_shards

pytestmark = pytest.mark.slow

IMAGE_SIZE = 32
SPACE = {"min_conv_blocks": 2, "max_conv_blocks": 2, "filters": [16]}
ENDED = {"succeeded", "failed", "cancelled"}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the database plays no part in reading datasets."""
    return f"sqlite:///{tmp_path / 'nas.db'}"


def body(dataset: dict, max_trials: int = 1) -> dict:
    return search_body(
        dataset={"image_size": IMAGE_SIZE, **dataset},
        space=SPACE,
        tuner={"max_trials": max_trials, "epochs": 1, "batch_size": 8, "seed": 1},
        export_top_k=1,
        # The model exported is the best score's (the defaults get no head start).
        defaults_margin=0,
    )


def decoded(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The photos of a folder of class subfolders as the worker decodes them, and labels."""
    from nas.core.folders import scan_folder
    from nas.worker.datasets import crop_to_fill

    scan = scan_folder(folder)
    images = []
    for file in scan.files:
        with Image.open(file) as image:
            images.append(crop_to_fill(image, IMAGE_SIZE))
    return np.stack(images), np.asarray(scan.labels)


def test_each_dataset_form_end_to_end(settings: Settings, store: Store, tmp_path: Path) -> None:
    root = settings.data_roots[0]
    train = copy_flowers_slice(root / "forms-train", per_class=8)
    test = copy_flowers_slice(root / "forms-test", per_class=3, start=8)
    write_shards(train, root / "forms-shards")
    write_shards(train, root / "forms-broken", shards=1, without="class")
    archive_port = free_port()
    flowers_archive(tmp_path / "site", per_class=4)
    settings = settings.model_copy(
        update={
            "tf_flowers_url": f"http://127.0.0.1:{archive_port}/{ARCHIVE_NAME}",
            "download_timeout_seconds": 10.0,
        }
    )
    logs = tmp_path / "logs"
    with live_api(settings, logs, cli_token(settings, "forms")) as api:

        def submitted(dataset: dict, max_trials: int = 1) -> str:
            return submit(api, body(dataset, max_trials))["id"]

        folder_id = submitted({"path": str(train), "test_path": str(test)}, max_trials=2)
        cached_id = submitted({"path": str(train), "test_split": 0.25})
        shards_id = submitted(
            {
                "tfrecords": f"{root}/forms-shards/*.tfrec",
                "class_names": list(TF_FLOWERS_CLASSES),
                "test_split": 0.25,
            }
        )
        broken_id = submitted({"tfrecords": f"{root}/forms-broken/*.tfrec"})
        offline_id = submitted({"name": "tf_flowers"})
        worker = start_nas(["worker"], settings_env(settings), logs / "worker.log")
        try:
            offline = wait_for_status(api, offline_id, ENDED, 600)
            with serve_files(tmp_path / "site", archive_port):
                online = wait_for_status(
                    api, submitted({"name": "tf_flowers", "test_split": 0.25}), ENDED, 300
                )
            assert worker.poll() is None, "failed searches must not take the worker down"
        finally:
            assert stop_process(worker) == 0
        searches = {
            name: api.get(f"/v1/searches/{search_id}").json()
            for name, search_id in [
                ("folder", folder_id),
                ("cached", cached_id),
                ("shards", shards_id),
                ("broken", broken_id),
            ]
        }
        worker_log = (logs / "worker.log").read_text()[-4000:]
        for name in ("folder", "cached", "shards"):
            assert searches[name]["status"] == "succeeded", f"{name}: {worker_log}"
        board = api.get(f"/v1/searches/{folder_id}/leaderboard").json()["trials"]
        models = api.get(f"/v1/searches/{folder_id}/models").json()["models"]
        table = list(
            csv.DictReader(io.StringIO(api.get(f"/v1/searches/{folder_id}/leaderboard.csv").text))
        )
        keras_file = tmp_path / "best.keras"
        keras_file.write_bytes(api.get(f"/v1/searches/{folder_id}/models/1/keras").content)

    # A folder with a test folder: the exported model's test accuracy, everywhere it shows.
    folder = searches["folder"]["dataset"]
    assert (folder["images"], folder["test_images"], folder["from_cache"]) == (40, 15, False)
    assert folder["train_images"] + folder["validation_images"] == 40
    (model,) = models
    assert 0.0 <= model["test_accuracy"] <= 1.0
    assert [row["test_accuracy"] for row in board] == [model["test_accuracy"], None]
    assert searches["folder"]["best_trial"]["test_accuracy"] == model["test_accuracy"]
    assert [row["test_accuracy"] for row in table] == [str(model["test_accuracy"]), ""]
    import keras

    images, labels = decoded(test)
    predicted = keras.saving.load_model(keras_file).predict(images.astype("float32"), verbose=0)
    assert model["test_accuracy"] == pytest.approx(np.mean(predicted.argmax(axis=1) == labels))

    # The same folder again: nothing decoded; a stratified test split of 2 photos per class.
    for name in ("cached", "shards"):
        info = searches[name]["dataset"]
        assert (info["train_images"], info["validation_images"], info["test_images"]) == (25, 5, 10)
        assert info["class_names"] == list(TF_FLOWERS_CLASSES)
    assert searches["cached"]["dataset"]["from_cache"] is True
    assert searches["shards"]["dataset"]["from_cache"] is False
    assert searches["cached"]["best_trial"]["test_accuracy"] is not None

    assert searches["broken"]["status"] == "failed"
    assert "has no feature 'class' (int64)" in searches["broken"]["error"]
    assert f"{root}/forms-broken/flowers-00-of-01.tfrec" in searches["broken"]["error"]
    assert offline["status"] == "failed"
    assert offline["error"].startswith("DatasetError: cannot download tf_flowers from http://")
    assert "Traceback" not in offline["error"]
    assert online["status"] == "succeeded", worker_log
    assert online["dataset"]["class_names"] == list(TF_FLOWERS_CLASSES)
    assert (online["dataset"]["images"], online["dataset"]["test_images"]) == (20, 5)


def test_a_lookalike_folder_does_not_read_another_owners_cache(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    root = settings.data_roots[0]
    alice_photos = copy_flowers_slice(root / "alice-photos", per_class=4, classes=2)
    # Bob's: the same relative names, sizes and modification times, other pixels.
    bob_photos = imitate_folder(alice_photos, root / "bob-photos", (255, 0, 0))
    logs = tmp_path / "logs"
    with live_api(settings, logs, cli_token(settings, "alice")) as alice:
        bob = httpx.Client(
            base_url=alice.base_url, timeout=30, headers=bearer(cli_token(settings, "bob"))
        )
        ids = []
        for client, photos in ((alice, alice_photos), (bob, bob_photos)):
            ids.append(submit(client, body({"path": str(photos)}))["id"])
        worker = start_nas(["worker"], settings_env(settings), logs / "worker.log")
        try:
            alices, bobs = (
                wait_for_status(client, search_id, ENDED, 600)
                for client, search_id in zip((alice, bob), ids, strict=True)
            )
        finally:
            assert stop_process(worker) == 0
            bob.close()

    worker_log = (logs / "worker.log").read_text()[-4000:]
    assert alices["status"] == bobs["status"] == "succeeded", worker_log
    assert alices["dataset"]["from_cache"] is False
    assert bobs["dataset"]["from_cache"] is False
