"""The confinement checks the API and the worker share, on real folders, links and shards."""

from __future__ import annotations

import glob
import re
import shutil
from pathlib import Path

import pytest

from nas.core.data_confinement import (
    DOT_DOT_IN_GLOB,
    LINKS_OUTSIDE,
    OUTSIDE_ROOTS,
    Confinement,
    EntryLimitReached,
    OutsideRoots,
    fixed_part,
)
from nas.core.folders import scan_folder
from nas.worker.datasets import load_images
from nas.worker.tfrecords import load_tfrecords
from tests.support.flowers import copy_flowers_slice
from tests.support.tfrecord_shards import write_shards


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A data root with files at two levels, hidden ones and a link that stays inside."""
    root = tmp_path / "data"
    for name in ("a/x1.rec", "a/x2.rec", "a/.x3.rec", "b/y1.rec", "b/xa.rec", "c/x[1].rec"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"shard")
    (root / "b-link").symlink_to(root / "b")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x9.rec").write_bytes(b"secret")
    return root


@pytest.mark.parametrize(
    "pattern", ["a/*.rec", "a/x?.rec", "*/x[12].rec", "a/*", "*/*", "b-link/*", "a/x1.rec", "*/z*"]
)
def test_glob_matches_what_the_standard_glob_matches(root: Path, pattern: str) -> None:
    expected = sorted(
        Path(match).resolve() for match in glob.glob(f"{root}/{pattern}", include_hidden=True)
    )

    assert Confinement([root]).glob(f"{root}/{pattern}") == expected


def link_out(root: Path, tmp_path: Path, target: str) -> Path:
    """``root/out``, a link to a ``target`` out of the roots: a missing path, a folder or a
    file; the target."""
    outside = {
        "missing": tmp_path / "missing",
        "folder": tmp_path / "outside",
        "file": tmp_path / "outside" / "x9.rec",
    }[target]
    (root / "out").symlink_to(outside)
    return outside


@pytest.mark.parametrize("target", ["missing", "folder", "file"])
@pytest.mark.parametrize("pattern", ["{root}/*/x9.rec", "{root}/?ut/*", "{root}/out/x9.rec"])
def test_a_glob_reaching_a_link_out_is_refused_whatever_its_target(
    root: Path, tmp_path: Path, target: str, pattern: str
) -> None:
    link_out(root, tmp_path, target)

    with pytest.raises(OutsideRoots) as refused:
        Confinement([root]).glob(pattern.format(root=root))

    assert str(refused.value) == OUTSIDE_ROOTS


@pytest.mark.parametrize(
    ("path", "readable"),
    [("a", True), ("a/x1.rec", True), ("b-link", True), ("missing", False), ("a/missing", False)],
)
def test_readable_inside_the_roots_is_what_is_there(root: Path, path: str, readable: bool) -> None:
    assert Confinement([root]).readable(root / path) is readable


@pytest.mark.parametrize("target", ["missing", "folder", "file"])
def test_nothing_out_of_the_roots_is_readable_whatever_is_there(
    root: Path, tmp_path: Path, target: str
) -> None:
    outside = link_out(root, tmp_path, target)

    assert not Confinement([root]).readable(root / "out")
    assert not Confinement([root]).readable(outside)


@pytest.mark.parametrize(
    ("pattern", "fixed"),
    [("/d/a/*.rec", "/d/a"), ("/d/*/x.rec", "/d"), ("/d/a/x1.rec", "/d/a/x1.rec"), ("*", ".")],
)
def test_the_fixed_part_of_a_glob_is_before_its_first_wildcard(pattern: str, fixed: str) -> None:
    assert fixed_part(pattern) == fixed


@pytest.mark.parametrize("pattern", ["{root}/a/../a/*.rec", "{root}/*/../../outside/*", ".."])
def test_a_glob_with_dot_dot_is_refused(root: Path, pattern: str) -> None:
    with pytest.raises(OutsideRoots) as refused:
        Confinement([root]).glob(pattern.format(root=root))

    assert str(refused.value) == DOT_DOT_IN_GLOB


def test_listing_stops_past_the_entry_limit(root: Path) -> None:
    listed = 4 + 3 + 2 + 1 + 2  # the root's entries, then those of a, b, c and b-link
    everything = Confinement([root]).glob(f"{root}/*/*")

    assert Confinement([root], max_entries=listed).glob(f"{root}/*/*") == everything
    with pytest.raises(EntryLimitReached):
        Confinement([root], max_entries=listed - 1).glob(f"{root}/*/*")


def test_a_confined_scan_equals_the_plain_scan_of_a_valid_folder(tmp_path: Path) -> None:
    root = tmp_path / "data"
    flowers = copy_flowers_slice(root / "flowers", per_class=2)
    (flowers / "daisy" / "notes.txt").symlink_to("/etc/hostname")  # never examined
    (flowers / ".hidden").symlink_to("/etc")  # nor is this
    elsewhere = copy_flowers_slice(root / "elsewhere", per_class=2, classes=1, start=2)
    (flowers / "zz-linked").symlink_to(elsewhere / "daisy")

    assert scan_folder(flowers, 1, Confinement([root])) == scan_folder(flowers, 1)


@pytest.mark.parametrize("what", ["class folder", "photo"])
@pytest.mark.parametrize("target", ["missing", "empty folder", "file"])
def test_a_confined_scan_refuses_a_link_out_whatever_its_target(
    tmp_path: Path, what: str, target: str
) -> None:
    flowers = copy_flowers_slice(tmp_path / "data" / "flowers", per_class=2, classes=2)
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.jpg").write_bytes(b"secret")
    targets = {
        "missing": tmp_path / "missing",
        "empty folder": tmp_path / "empty",
        "file": tmp_path / "file.jpg",
    }
    link = flowers / "zz" if what == "class folder" else flowers / "daisy" / "zz.jpg"
    link.symlink_to(targets[target])

    with pytest.raises(OutsideRoots) as refused:
        scan_folder(flowers, None, Confinement([tmp_path / "data"]))

    assert str(refused.value) == LINKS_OUTSIDE


@pytest.mark.parametrize("swap", ["photo", "class folder"])
def test_a_photo_swapped_for_a_link_out_after_the_scan_is_never_read(
    tmp_path: Path, swap: str
) -> None:
    root = tmp_path / "data"
    flowers = copy_flowers_slice(root / "flowers", per_class=2, classes=2)
    outside = copy_flowers_slice(tmp_path / "outside", per_class=2, classes=2)
    scan = scan_folder(flowers, None, Confinement([root]))
    # Between the worker's check and its reads, a photo (or its class folder) becomes a link
    # to a real photo outside the roots.
    if swap == "photo":
        photo = scan.files[0]
        photo.unlink()
        photo.symlink_to(outside / photo.parent.name / photo.name)
    else:
        folder = scan.files[0].parent
        shutil.rmtree(folder)
        folder.symlink_to(outside / folder.name)

    with pytest.raises(OutsideRoots) as refused:
        load_images(scan, 32, None)

    assert str(refused.value) == LINKS_OUTSIDE


def test_shards_are_listed_inside_the_roots_only(tmp_path: Path) -> None:
    photos = copy_flowers_slice(tmp_path / "photos", per_class=2, classes=2)
    root = tmp_path / "data"
    shards = write_shards(photos, root / "shards")
    outside = write_shards(photos, tmp_path / "outside", shards=1)
    pattern = f"{root}/shards/*.tfrec"

    def read() -> object:
        return load_tfrecords(
            pattern,
            class_names=None,
            image_size=16,
            max_images_per_class=None,
            cache_dir=None,
            max_classes=5,
            confinement=Confinement([root]),
        )

    assert len(read().labels) == 4
    shards[1].unlink()
    shards[1].symlink_to(outside[0])
    with pytest.raises(OutsideRoots, match=re.escape(OUTSIDE_ROOTS)):
        read()
    shutil.rmtree(root / "shards")
    (root / "shards").symlink_to(tmp_path / "outside")
    with pytest.raises(OutsideRoots):
        read()
