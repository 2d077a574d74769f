"""The dataset forms on real photos: TFRecord shards, the tf_flowers download, the 3-way split."""

from __future__ import annotations

import io
import os
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nas.core.errors import DatasetError
from nas.core.folders import scan_folder
from nas.core.ports import free_port
from nas.core.specs import TF_FLOWERS_CLASSES
from nas.worker.datasets import load_images, three_way_split
from nas.worker.tf_flowers import fetch_tf_flowers
from nas.worker.tfrecords import load_tfrecords
from tests.support.flowers import copy_flowers_slice
from tests.support.http_files import ARCHIVE_NAME, flowers_archive, serve_files
from tests.support.tfrecord_shards import write_shards

SIZE = 24
PER_CLASS = 4


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_flowers_slice(tmp_path_factory.mktemp("photos") / "flowers", per_class=PER_CLASS)


def read_shards(pattern: str, cache_dir: Path | None = None, **options):
    arguments = {"class_names": None, "max_images_per_class": None, "max_classes": 1000} | options
    return load_tfrecords(pattern, image_size=SIZE, cache_dir=cache_dir, **arguments)


def test_shards_decode_like_the_folder_they_came_from(photos: Path, tmp_path: Path) -> None:
    write_shards(photos, tmp_path / "shards", shards=2)
    folder = load_images(scan_folder(photos), SIZE, cache_dir=None)

    decoded = read_shards(str(tmp_path / "shards" / "*.tfrec"), class_names=TF_FLOWERS_CLASSES)

    # Records go round-robin to the 2 shards, which are read one after the other.
    count = len(folder.labels)
    order = np.concatenate([np.arange(0, count, 2), np.arange(1, count, 2)])
    np.testing.assert_array_equal(decoded.images, folder.images[order])
    np.testing.assert_array_equal(decoded.labels, folder.labels[order])
    assert decoded.class_names == TF_FLOWERS_CLASSES and not decoded.from_cache


def test_shards_are_cached_and_named_by_index_by_default(photos: Path, tmp_path: Path) -> None:
    write_shards(photos, tmp_path / "shards", shards=3)
    pattern, cache = str(tmp_path / "shards" / "*-of-03.tfrec"), tmp_path / "cache"

    first = read_shards(pattern, cache, max_images_per_class=2)
    second = read_shards(pattern, cache, max_images_per_class=2)
    uncapped = read_shards(pattern, cache)

    assert first.class_names == ("0", "1", "2", "3", "4")
    assert Counter(first.labels.tolist()) == dict.fromkeys(range(5), 2)
    assert (first.from_cache, second.from_cache, uncapped.from_cache) == (False, True, False)
    np.testing.assert_array_equal(first.images, second.images)
    assert len(uncapped.labels) == 5 * PER_CLASS


def test_local_shards_are_cached_by_their_records(photos: Path, tmp_path: Path) -> None:
    (shard,) = write_shards(photos, tmp_path / "shards", shards=1)
    cache = tmp_path / "cache"
    first = read_shards(str(shard), cache)
    again = read_shards(str(shard), cache)
    # The same records with two classes swapped: the same size, and the same mtime restored.
    stat = shard.stat()
    write_shards(photos, tmp_path / "shards", shards=1, classes=[1, 0, 2, 3, 4])
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert shard.stat().st_size == stat.st_size

    swapped = read_shards(str(shard), cache)

    assert again.from_cache and not swapped.from_cache
    assert swapped.labels[0] == first.labels[0] + 1 == 1


@pytest.mark.parametrize("feature", ["image", "class"])
def test_a_shard_without_a_feature_is_named(photos: Path, tmp_path: Path, feature: str) -> None:
    (shard,) = write_shards(photos, tmp_path / "shards", shards=1, without=feature)

    with pytest.raises(DatasetError) as error:
        read_shards(str(shard))

    assert f"{shard}: record 0 has no feature '{feature}'" in str(error.value)


def test_bad_shards_and_classes_are_refused(photos: Path, tmp_path: Path) -> None:
    (shard,) = write_shards(photos, tmp_path / "shards", shards=1)
    not_a_shard = tmp_path / "shards" / "notes.tfrec"
    not_a_shard.write_bytes(b"this is not a TFRecord file" * 10)

    with pytest.raises(DatasetError, match="names 2 classes"):
        read_shards(str(shard), class_names=["daisy", "other"])
    with pytest.raises(DatasetError, match=r"notes\.tfrec is not a readable TFRecord file"):
        read_shards(str(not_a_shard))
    with pytest.raises(DatasetError, match="no TFRecord shard matches"):
        read_shards(str(tmp_path / "none-*.tfrec"))


@pytest.mark.parametrize("index", [1000, 3_000_000, 2**40, -1, -(2**63)])
def test_a_class_index_out_of_bounds_is_named(photos: Path, tmp_path: Path, index: int) -> None:
    (shard,) = write_shards(photos, tmp_path / "shards", shards=1, classes=[0, 1, index, 3, 4])

    with pytest.raises(DatasetError) as error:
        read_shards(str(shard), max_classes=1000)

    # One shard holds the records in folder order: the third class starts at record 8.
    assert str(error.value) == (
        f"{shard}: record {2 * PER_CLASS} has class {index} (feature 'class'), "
        "outside 0..999 (NAS_LIMIT_CLASSES)"
    )


def test_class_indices_up_to_the_bound_are_read(photos: Path, tmp_path: Path) -> None:
    (shard,) = write_shards(photos, tmp_path / "shards", shards=1, classes=[0, 1, 2, 3, 4])

    assert len(read_shards(str(shard), max_classes=5).class_names) == 5


def test_a_record_over_the_pixel_cap_is_skipped(tmp_path: Path) -> None:
    photos = copy_flowers_slice(tmp_path / "photos", per_class=2, classes=2)
    Image.new("1", (9000, 9000)).save(photos / "daisy" / "huge.jpg", "PNG")
    (shard,) = write_shards(photos, tmp_path / "shards", shards=1)

    decoded = read_shards(str(shard), max_pixels=40_000_000)

    assert decoded.skipped == (f"{shard}#2",) and len(decoded.labels) == 4


def test_three_way_split_is_stratified_disjoint_and_seeded() -> None:
    labels = np.repeat(np.arange(3), [40, 20, 10])

    train, validation, test = three_way_split(labels, 0.15, 0.2, seed=3)

    assert sorted(np.concatenate([train, validation, test]).tolist()) == list(range(70))
    assert Counter(labels[test].tolist()) == {0: 6, 1: 3, 2: 2}  # round(n * 0.15), at least 1
    # Validation takes 20% of what the test split left: 34, 17 and 8 photos.
    assert Counter(labels[validation].tolist()) == {0: 7, 1: 3, 2: 2}
    again = three_way_split(labels, 0.15, 0.2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, validation, test), strict=True))
    assert not np.array_equal(three_way_split(labels, 0.15, 0.2, seed=4)[2], test)
    no_test = three_way_split(labels, None, 0.2, seed=3)
    assert len(no_test[2]) == 0 and len(no_test[0]) + len(no_test[1]) == 70


def test_tf_flowers_is_downloaded_once_over_http(tmp_path: Path) -> None:
    flowers_archive(tmp_path / "site", per_class=2)
    cache = tmp_path / "cache"

    steps: list[None] = []

    def fetch(url: str) -> Path:
        archive = f"{url}/{ARCHIVE_NAME}"
        return fetch_tf_flowers(cache, archive, 10, on_progress=lambda: steps.append(None))

    with serve_files(tmp_path / "site") as url:
        folder = fetch(url)
    downloaded = len(steps)
    again = fetch(url)  # server gone

    assert again == folder == cache / "tf_flowers" / "flower_photos"
    scan = scan_folder(folder)
    assert scan.class_names == TF_FLOWERS_CLASSES and len(scan.files) == 10
    # A chunk or more, then each of the 17 members (6 folders, 10 photos, the license)
    # extracted; nothing the second time.
    assert downloaded >= 1 + 17 and len(steps) == downloaded
    assert [entry.name for entry in (cache / "tf_flowers").iterdir()] == ["flower_photos"]


def test_tf_flowers_offline_or_missing_is_a_readable_error(tmp_path: Path) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}/{ARCHIVE_NAME}"
    with pytest.raises(DatasetError, match=f"cannot download tf_flowers from {unreachable}"):
        fetch_tf_flowers(tmp_path / "cache", unreachable, timeout_seconds=5)
    (tmp_path / "site").mkdir()
    with serve_files(tmp_path / "site") as url, pytest.raises(DatasetError, match="HTTP 404"):
        fetch_tf_flowers(tmp_path / "cache", f"{url}/{ARCHIVE_NAME}", timeout_seconds=5)
    assert list((tmp_path / "cache" / "tf_flowers").iterdir()) == []


def test_tf_flowers_archive_cannot_write_outside_its_folder(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    with tarfile.open(site / ARCHIVE_NAME, "w:gz") as tar:
        payload = b"escaped"
        member = tarfile.TarInfo("flower_photos/../../../escaped.txt")
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))

    with serve_files(site) as url, pytest.raises(DatasetError, match="unusable"):
        fetch_tf_flowers(tmp_path / "cache", f"{url}/{ARCHIVE_NAME}", timeout_seconds=5)
    assert not list(tmp_path.rglob("escaped.txt"))
