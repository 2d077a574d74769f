"""Data confinement over real HTTP with a real worker: a dataset swapped for a link out of the
data roots after submit fails at claim time naming nothing outside (a folder that leads out is
one no worker can read), and submitting a huge folder never stalls another owner's
requests."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from nas.cli.launcher import settings_env, start_nas, stop_process
from nas.core.settings import Settings
from nas.core.store import Store
from tests.support.factories import ONE_TRIAL, search_body
from tests.support.flowers import copy_flowers_slice
from tests.support.live import cli_token, live_api, wait_for_status
from tests.support.tfrecord_shards import write_shards

pytestmark = pytest.mark.slow

SECRET = "outsidesecret"  # in every outside name; must never reach a search record
OUTSIDE_ROOTS = "must lie inside one of the configured data roots (NAS_DATA_ROOTS)"
LINKS_OUTSIDE = "holds links to files outside the configured data roots (NAS_DATA_ROOTS)"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the database plays no part in confinement."""
    return f"sqlite:///{tmp_path / 'nas.db'}"


@pytest.fixture
def confined(settings: Settings, store: Store, tmp_path: Path) -> Settings:
    """The settings, on a migrated database, with one data root of this test's own; short
    leases, so that a search whose photos no worker can read fails within seconds."""
    root = tmp_path / "data"
    root.mkdir()
    return settings.model_copy(
        update={"data_roots": [root], "heartbeat_seconds": 0.5, "lease_seconds": 4.0}
    )


def unreadable(field: str, path: Path) -> str:
    """The error of a search whose ``dataset.<field>`` at ``path`` no worker can read."""
    return (
        f"no live worker can read dataset.{field} {path} inside its data roots "
        f"(NAS_DATA_ROOTS); hosts that cannot: {socket.gethostname()}"
    )


def outside_dataset(folder: Path) -> Path:
    """Photos outside the roots, in class folders and files whose names hold ``SECRET``."""
    copy_flowers_slice(folder, per_class=3, classes=2)
    for number, classes in enumerate(sorted(folder.iterdir())):
        renamed = classes.rename(folder / f"{SECRET}-class-{number}")
        (renamed / f"{SECRET}-unreadable.jpg").write_bytes(b"not a photo")
    return folder


def swap_for_link(path: Path, target: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    path.symlink_to(target)


def body(dataset: dict) -> dict:
    return search_body(
        dataset=dataset,
        space={"min_conv_blocks": 1, "max_conv_blocks": 1, "filters": [8]},
        tuner={**ONE_TRIAL, "batch_size": 4, "seed": 1},
        export_top_k=1,
    )


def test_data_swapped_out_of_the_roots_after_submit_fails_at_claim(
    confined: Settings, tmp_path: Path
) -> None:
    root = confined.data_roots[0]
    outside = outside_dataset(tmp_path / f"{SECRET}-private" / "flowers")
    write_shards(outside, tmp_path / f"{SECRET}-private" / "shards", shards=1)
    for name in ("folder", "class", "test", "shards"):
        copy_flowers_slice(root / name, per_class=3, classes=2)
    write_shards(root / "shards", root / "shards-tfrec", shards=2)
    copy_flowers_slice(root / "test-photos", per_class=2, classes=2, start=3)
    outside_shard = tmp_path / f"{SECRET}-private" / "shards" / "flowers-00-of-01.tfrec"
    outside_class = next(outside.iterdir())
    # What each search reads, the swap made after it was accepted, and the API's refusal.
    cases = {
        "folder": (
            {"path": str(root / "folder")},
            lambda: swap_for_link(root / "folder", outside),
            unreadable("path", root.resolve() / "folder"),
        ),
        "class folder": (
            {"path": str(root / "class")},
            lambda: swap_for_link(next((root / "class").iterdir()), outside_class),
            f"dataset.path {LINKS_OUTSIDE}",
        ),
        "test folder": (
            {"path": str(root / "test"), "test_path": str(root / "test-photos")},
            lambda: swap_for_link(root / "test-photos", outside),
            unreadable("test_path", root.resolve() / "test-photos"),
        ),
        "shard": (
            {"tfrecords": f"{root}/shards-tfrec/*.tfrec"},
            lambda: swap_for_link(root / "shards-tfrec" / "flowers-01-of-02.tfrec", outside_shard),
            f"dataset.tfrecords {OUTSIDE_ROOTS}",
        ),
    }
    logs = tmp_path / "logs"
    with live_api(confined, logs, cli_token(confined, "mallory")) as api:
        ids = {}
        for case, (dataset, swap, _) in cases.items():
            response = api.post("/v1/searches", json=body(dataset))
            assert response.status_code == 201, f"{case}: {response.text}"
            ids[case] = response.json()["id"]
            swap()
        worker = start_nas(["worker"], settings_env(confined), logs / "worker.log")
        try:
            ended = {
                case: wait_for_status(api, search_id, {"succeeded", "failed"}, 600)
                for case, search_id in ids.items()
            }
        finally:
            stop_process(worker)
        records = {case: api.get(f"/v1/searches/{ids[case]}") for case in cases}

    outcomes = {
        case: (ended[case]["status"], ended[case]["error"], SECRET in records[case].text)
        for case in cases
    }
    assert outcomes == {
        case: ("failed", f"DatasetError: {message}", False)
        for case, (_, _, message) in cases.items()
    }


def test_submitting_a_huge_folder_does_not_stall_other_owners(
    confined: Settings, tmp_path: Path
) -> None:
    root = confined.data_roots[0]
    huge = root / "huge"
    for label in range(2):
        folder = huge / f"class-{label}"
        folder.mkdir(parents=True)
        empty = tmp_path / f"empty-{label}.jpg"  # one per class: an inode has at most 65,000 links
        empty.touch()
        for number in range(50_000):
            os.link(empty, folder / f"{number:06d}.jpg")
    logs = tmp_path / "logs"
    try:
        with live_api(confined, logs, cli_token(confined, "bulk")) as api:
            other = {"Authorization": f"Bearer {cli_token(confined, 'other')}"}
            submitted: list[int] = []

            def submit() -> None:
                response = api.post("/v1/searches", json=body({"path": str(huge)}))
                submitted.append(response.status_code)

            submitters = [threading.Thread(target=submit) for _ in range(2)]
            for thread in submitters:
                thread.start()
            latencies = []
            while any(thread.is_alive() for thread in submitters) or not latencies:
                started = time.monotonic()
                assert api.get("/v1/searches", headers=other).status_code == 200
                latencies.append(time.monotonic() - started)
            for thread in submitters:
                thread.join()
    finally:
        shutil.rmtree(huge)

    # Accepted: the worker checks every file when it claims the search.
    assert submitted == [201, 201]
    assert max(latencies) < 1.0, latencies
