"""A search's prepared data file, on real decoded photos: it reads back as it was written (with
and without test photos), loads without pickle, and a missing or torn file fails naming it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from nas.core.errors import DatasetError
from nas.worker.datasets import ImageSet, three_way_split
from nas.worker.prepared_data import read_prepared, write_prepared
from nas.worker.search_data import SearchData
from tests.support.factories import decoded_flowers


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> ImageSet:
    return decoded_flowers(tmp_path_factory, size=32, per_class=4)


def split(photos: ImageSet, test_split: float | None) -> SearchData:
    train, validation, held_out = three_way_split(photos.labels, test_split, 0.25, seed=3)
    test = None
    if test_split is not None:
        test = ImageSet(
            images=photos.images[held_out],
            labels=photos.labels[held_out],
            class_names=photos.class_names,
            skipped=("tulips/unreadable.jpg",),
        )
    images = replace(photos, skipped=("roses/broken.jpg",), from_cache=True, fingerprint="ab" * 32)
    return SearchData(images=images, train=train, validation=validation, test=test)


def assert_same(read: ImageSet, written: ImageSet) -> None:
    np.testing.assert_array_equal(read.images, written.images)
    np.testing.assert_array_equal(read.labels, written.labels)
    assert (read.images.dtype, read.labels.dtype) == (written.images.dtype, written.labels.dtype)
    fields = ("class_names", "skipped", "from_cache", "fingerprint")
    assert [getattr(read, name) for name in fields] == [getattr(written, name) for name in fields]


@pytest.mark.parametrize("test_split", [0.25, None])
def test_prepared_data_reads_back_as_written(
    photos: ImageSet, tmp_path: Path, test_split: float | None
) -> None:
    data = split(photos, test_split)
    path = tmp_path / "data" / "prepared-1.npz"

    write_prepared(path, data)
    read = read_prepared(path)

    assert list(path.parent.iterdir()) == [path], "written aside, then renamed"
    assert_same(read.images, data.images)
    np.testing.assert_array_equal(read.train, data.train)
    np.testing.assert_array_equal(read.validation, data.validation)
    if data.test is None:
        assert read.test is None
    else:
        assert read.test is not None
        assert_same(read.test, data.test)
    assert read.info() == data.info()
    with np.load(path, allow_pickle=False) as arrays:
        assert all(arrays[name].dtype != object for name in arrays.files)


def test_a_missing_or_torn_file_fails_naming_it(photos: ImageSet, tmp_path: Path) -> None:
    missing = tmp_path / "prepared-1.npz"
    with pytest.raises(DatasetError, match=r"prepared-1\.npz cannot be read"):
        read_prepared(missing)
    torn = tmp_path / "prepared-2.npz"
    write_prepared(torn, split(photos, None))
    torn.write_bytes(torn.read_bytes()[:1000])
    with pytest.raises(DatasetError, match=r"prepared-2\.npz cannot be read.*NAS_ARTIFACTS_DIR"):
        read_prepared(torn)
