"""nas.worker.datasets on real flower photos: scanning, decoding, caching and splitting."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nas.core.errors import DatasetError
from nas.core.folders import scan_folder
from nas.worker.datasets import crop_to_fill, load_images, stratified_split
from tests.support.flowers import FLOWERS, copy_flowers_slice
from tests.support.lookalikes import imitate, imitate_folder

REPO = Path(__file__).resolve().parents[2]
PER_CLASS = 6
SIZE = 32
RED = (255, 0, 0)


@pytest.fixture
def flowers(tmp_path: Path) -> Path:
    """Six photos of each of daisy, dandelion and roses, in a folder of its own."""
    return copy_flowers_slice(tmp_path / "flowers", per_class=PER_CLASS, classes=3)


def corrupt(path: Path) -> Path:
    """Write bytes that no image decoder accepts to ``path``."""
    path.write_bytes(b"this is not a JPEG" * 50)
    return path


def test_scan_lists_classes_and_files_in_order(flowers: Path) -> None:
    scan = scan_folder(flowers)

    assert scan.root == flowers
    assert scan.class_names == ("daisy", "dandelion", "roses")
    assert scan.labels == (0,) * PER_CLASS + (1,) * PER_CLASS + (2,) * PER_CLASS
    assert [file.parent.name for file in scan.files] == [
        scan.class_names[label] for label in scan.labels
    ]
    assert list(scan.files) == sorted(scan.files)


def test_scan_ignores_hidden_entries_and_other_files(flowers: Path) -> None:
    photo = next((flowers / "daisy").iterdir())
    shutil.copy(photo, flowers / "daisy" / "zz_upper.JPG")
    shutil.copy(photo, flowers / "daisy" / ".hidden.jpg")
    (flowers / "daisy" / "notes.txt").write_text("not an image")
    (flowers / ".thumbnails").mkdir()
    shutil.copy(photo, flowers / ".thumbnails" / "thumb.jpg")
    (flowers / "README.md").write_text("a file next to the class folders")

    scan = scan_folder(flowers)

    assert scan.class_names == ("daisy", "dandelion", "roses")
    daisies = [file.name for file, label in zip(scan.files, scan.labels, strict=True) if not label]
    assert len(daisies) == PER_CLASS + 1
    assert daisies[-1] == "zz_upper.JPG"


def test_scan_keeps_the_first_images_of_each_class(flowers: Path) -> None:
    everything = scan_folder(flowers)
    capped = scan_folder(flowers, max_images_per_class=2)

    assert capped.labels == (0, 0, 1, 1, 2, 2)
    assert capped.files == tuple(
        file for label in range(3) for file in everything.files[label * PER_CLASS :][:2]
    )


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_scan_rejects_what_is_not_a_folder(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "photos"
    if kind == "file":
        path.write_text("a file")

    with pytest.raises(DatasetError, match="is not a folder"):
        scan_folder(path)


def test_scan_rejects_a_single_class(flowers: Path) -> None:
    shutil.rmtree(flowers / "dandelion")
    shutil.rmtree(flowers / "roses")

    with pytest.raises(DatasetError, match="at least 2; found 1"):
        scan_folder(flowers)


def test_scan_names_the_empty_class_folder(flowers: Path) -> None:
    (flowers / "tulips").mkdir()
    (flowers / "tulips" / "notes.txt").write_text("no photos yet")

    with pytest.raises(DatasetError, match="hold no images: tulips"):
        scan_folder(flowers)


def test_scan_rejects_a_folder_without_images(tmp_path: Path) -> None:
    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()

    with pytest.raises(DatasetError, match="no images"):
        scan_folder(tmp_path)


def test_crop_to_fill_keeps_the_center_of_a_wide_image() -> None:
    # 90x30: red, green, blue thirds; the centered 30x30 square is the green third.
    wide = Image.new("RGB", (90, 30), (255, 0, 0))
    wide.paste((0, 255, 0), (30, 0, 60, 30))
    wide.paste((0, 0, 255), (60, 0, 90, 30))

    pixels = crop_to_fill(wide, 16)

    assert pixels.shape == (16, 16, 3)
    assert pixels.dtype == np.uint8
    assert (pixels == (0, 255, 0)).all()


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_crop_to_fill_converts_to_rgb(mode: str) -> None:
    tall = Image.new(mode, (20, 50))

    pixels = crop_to_fill(tall, 8)

    assert pixels.shape == (8, 8, 3)
    assert pixels.dtype == np.uint8


def test_crop_to_fill_decodes_a_large_jpeg_at_a_reduced_scale(tmp_path: Path) -> None:
    (photo,) = sorted(FLOWERS.joinpath("roses").glob("*.jpg"))[:1]
    with Image.open(photo) as small:
        small.convert("RGB").resize((2048, 2048)).save(tmp_path / "large.jpg", quality=95)
    with Image.open(tmp_path / "large.jpg") as full:
        full.load()
        expected = crop_to_fill(full, 64)

    with Image.open(tmp_path / "large.jpg") as large:
        pixels = crop_to_fill(large, 64)
        # 1/8 scale keeps 256 px, at least twice the 64 asked for.
        assert large.size == (256, 256)

    assert np.abs(pixels.astype(int) - expected).mean() < 2


def test_load_images_decodes_every_photo(flowers: Path) -> None:
    scan = scan_folder(flowers)

    image_set = load_images(scan, SIZE, cache_dir=None)

    assert image_set.images.shape == (3 * PER_CLASS, SIZE, SIZE, 3)
    assert image_set.images.dtype == np.uint8
    assert image_set.labels.dtype == np.int32
    assert image_set.labels.tolist() == list(scan.labels)
    assert image_set.class_names == scan.class_names
    assert image_set.skipped == ()
    assert not image_set.from_cache
    assert image_set.images.std() > 10  # real photos, not blank arrays


def test_load_images_skips_and_reports_corrupt_files(
    flowers: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corrupt(flowers / "roses" / "broken.jpg")
    scan = scan_folder(flowers)
    assert len(scan.files) == 3 * PER_CLASS + 1

    with caplog.at_level(logging.WARNING, logger="nas.worker.datasets"):
        image_set = load_images(scan, SIZE, cache_dir=None)

    assert image_set.skipped == ("roses/broken.jpg",)
    assert len(image_set.images) == len(image_set.labels) == 3 * PER_CLASS
    assert np.bincount(image_set.labels).tolist() == [PER_CLASS] * 3
    assert "broken.jpg" in caplog.text


def test_load_images_rejects_a_class_without_readable_images(flowers: Path) -> None:
    for photo in (flowers / "dandelion").iterdir():
        corrupt(photo)

    with pytest.raises(DatasetError, match="no readable images in class folders: dandelion"):
        load_images(scan_folder(flowers), SIZE, cache_dir=None)


def test_cache_makes_a_second_load_decode_nothing(flowers: Path, tmp_path: Path) -> None:
    corrupt(flowers / "daisy" / "broken.jpg")
    cache = tmp_path / "cache"
    scan = scan_folder(flowers)

    first = load_images(scan, SIZE, cache)
    second = load_images(scan, SIZE, cache)

    assert not first.from_cache
    assert second.from_cache
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.labels, first.labels)
    assert second.labels.dtype == np.int32
    assert second.class_names == first.class_names
    assert second.skipped == first.skipped == ("daisy/broken.jpg",)
    assert sorted(path.suffix or path.name for path in cache.iterdir()) == [".npz", "digests"]


def test_cache_key_follows_files_and_image_size(flowers: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    load_images(scan_folder(flowers), SIZE, cache)

    assert not load_images(scan_folder(flowers), SIZE // 2, cache).from_cache
    assert not load_images(scan_folder(flowers, max_images_per_class=3), SIZE, cache).from_cache
    daisies = sorted((flowers / "daisy").iterdir())
    shutil.copyfile(daisies[1], daisies[0])
    assert not load_images(scan_folder(flowers), SIZE, cache).from_cache
    assert len(list(cache.glob("*.npz"))) == 4


def test_cache_survives_a_copy_of_the_folder(flowers: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    load_images(scan_folder(flowers), SIZE, cache)
    moved = flowers.rename(tmp_path / "moved")

    assert load_images(scan_folder(moved), SIZE, cache).from_cache


def test_cache_is_not_shared_with_a_lookalike_folder(flowers: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    load_images(scan_folder(flowers), SIZE, cache)
    # Another owner's folder: the same relative names, sizes and modification times.
    lookalike = imitate_folder(flowers, tmp_path / "lookalike", RED)

    image_set = load_images(scan_folder(lookalike), SIZE, cache)

    assert not image_set.from_cache
    assert (image_set.images == RED).all()


def test_cache_is_shared_by_folders_of_identical_bytes(flowers: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = load_images(scan_folder(flowers), SIZE, cache)
    # Copied without the modification times: only the bytes are the same.
    copy = shutil.copytree(flowers, tmp_path / "copy", copy_function=shutil.copyfile)

    second = load_images(scan_folder(copy), SIZE, cache)

    assert second.from_cache
    np.testing.assert_array_equal(second.images, first.images)


def test_a_file_rewritten_with_its_size_and_time_is_decoded_again(
    flowers: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    scan = scan_folder(flowers)
    load_images(scan, SIZE, cache)
    assert load_images(scan, SIZE, cache).from_cache
    rewritten = scan.files[0]
    original = tmp_path / "original.jpg"
    shutil.copy2(rewritten, original)

    imitate(original, rewritten, RED)
    image_set = load_images(scan_folder(flowers), SIZE, cache)

    assert not image_set.from_cache
    assert (image_set.images[0] == RED).all() and not (image_set.images[1:] == RED).all()


def test_digests_of_unchanged_files_are_remembered(flowers: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    load_images(scan_folder(flowers), SIZE, cache)
    tables = sorted((cache / "digests").iterdir())
    assert len(tables) == 3  # one per class folder
    # Remembered digests are trusted, not recomputed: wrong ones make a different key.
    for table in tables:
        entries = json.loads(table.read_text())
        assert len(entries) == PER_CLASS
        table.write_text(
            json.dumps({name: [*entry[:-1], "0" * 64] for name, entry in entries.items()})
        )

    assert not load_images(scan_folder(flowers), SIZE, cache).from_cache


def test_each_file_hashed_or_remembered_and_each_photo_decoded_is_reported(
    flowers: Path, tmp_path: Path
) -> None:
    # What a preparer notes its progress by, so that hashing a large folder keeps its lease.
    cache, scan = tmp_path / "cache", scan_folder(flowers)
    calls: list[str] = []

    def load() -> list[str]:
        calls.clear()
        load_images(
            scan,
            SIZE,
            cache,
            on_decoded=lambda: calls.append("decoded"),
            on_hashed=lambda: calls.append("hashed"),
        )
        return calls

    hashed = ["hashed"] * len(scan.files)
    assert load() == hashed + ["decoded"] * len(scan.files), "every digest comes first"
    assert load() == hashed, "remembered, then read from the cache"


def test_an_image_over_the_pixel_cap_is_skipped_undecoded(flowers: Path) -> None:
    # 9000 x 9000 pixels, under Pillow's bomb limit, in a few kB: 1 bit per pixel, all black.
    Image.new("1", (9000, 9000)).save(flowers / "roses" / "huge.png")
    # The peak RSS of this process alone (VmHWM): ru_maxrss would count pytest's, from the fork.
    probe = (
        "import re, sys; from pathlib import Path; "
        "from nas.worker.datasets import load_images; from nas.core.folders import scan_folder; "
        "images = load_images(scan_folder(Path(sys.argv[1])), 32, None, max_pixels=40_000_000); "
        "peak_kib = re.search(r'VmHWM:\\s+(\\d+)', Path('/proc/self/status').read_text())[1]; "
        "print(images.skipped, len(images.labels), int(peak_kib) // 1024)"
    )

    result = subprocess.run(
        [sys.executable, "-c", probe, str(flowers)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )

    skipped, decoded, peak_mib = result.stdout.rsplit(maxsplit=2)
    assert skipped == "('roses/huge.png',)" and int(decoded) == 3 * PER_CLASS
    # Decoded, it would take 81 MB as bits and 243 MB as RGB.
    assert int(peak_mib) < 200, result.stdout
    assert "81000000 pixels, over the cap of 40000000" in result.stderr


def test_stratified_split_holds_out_each_class_in_proportion() -> None:
    labels = np.repeat([0, 1, 2], [10, 20, 5])

    train, validation = stratified_split(labels, 0.2, seed=7)

    assert np.bincount(labels[validation]).tolist() == [2, 4, 1]
    assert np.bincount(labels[train]).tolist() == [8, 16, 4]
    assert np.intersect1d(train, validation).size == 0
    assert np.union1d(train, validation).tolist() == list(range(len(labels)))
    assert train.tolist() == sorted(train) and validation.tolist() == sorted(validation)


def test_stratified_split_is_deterministic_per_seed() -> None:
    labels = np.repeat([0, 1, 2, 3], 25)

    first = stratified_split(labels, 0.3, seed=1)
    again = stratified_split(labels, 0.3, seed=1)
    other = stratified_split(labels, 0.3, seed=2)

    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert first[1].tolist() != other[1].tolist()


def test_stratified_split_keeps_tiny_classes_in_both_sets() -> None:
    labels = np.array([0, 0, 1, 1, 1, 2])

    train, validation = stratified_split(labels, 0.9, seed=0)

    assert np.bincount(labels[validation], minlength=3).tolist() == [1, 2, 0]
    assert np.bincount(labels[train], minlength=3).tolist() == [1, 1, 1]


def test_importing_datasets_does_not_import_tensorflow_or_keras() -> None:
    probe = (
        "import sys, nas.worker.datasets; "
        "print(sorted({'tensorflow', 'keras', 'keras_tuner'} & set(sys.modules)))"
    )

    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "[]"
