"""Folders of class subfolders of images: scan, decode (crop to fill), cache and split.

Imports only NumPy, Pillow, the standard library, the (standard-library) confinement checks
and worker modules that import nothing else, so the API can validate paths with it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from nas.core.data_confinement import Confinement, OutsideRoots
from nas.worker.atomic_files import write_atomically
from nas.worker.content_digests import DigestIndex, digest_bytes, digest_file

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
# Part of every cache key: bump it whenever decoding changes, so that stale caches are never read.
CACHE_FORMAT = 2
# What decoding an image may raise for a file that is not an image it can use.
UNUSABLE_IMAGE_ERRORS = (OSError, ValueError, EOFError, Image.DecompressionBombError)

_log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A dataset that cannot be used; the message is meant for the user who submitted it."""


class TooManyPixelsError(ValueError):
    """An image over the cap on pixels, found before decoding it."""


@dataclass(frozen=True)
class FolderScan:
    """The image files of a folder of class subfolders, in a deterministic order.

    ``labels[i]`` is the index in ``class_names`` of the folder holding ``files[i]``.
    """

    root: Path
    class_names: tuple[str, ...]
    files: tuple[Path, ...]
    labels: tuple[int, ...]
    #: The data roots the files were checked against; reads check the opened files again.
    confinement: Confinement | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ImageSet:
    """Decoded images: ``images`` is (N, S, S, 3) uint8 RGB and ``labels`` is (N,) int32.

    ``skipped`` lists the files (relative to the scanned root) that could not be decoded;
    ``from_cache`` tells whether the set was read from the cache rather than decoded.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    skipped: tuple[str, ...]
    from_cache: bool = False


def scan_folder(
    path: Path, max_images_per_class: int | None = None, confinement: Confinement | None = None
) -> FolderScan:
    """List the images of ``path``, one subfolder per class, sorted by name.

    Hidden entries are ignored, as are files without an image suffix and anything nested
    deeper than the class subfolders. With ``max_images_per_class``, only the first images
    (by name) of each class are kept. With ``confinement``, ``path`` is resolved and must lie
    in its data roots, and no entry examined (a visible entry of ``path``, an image of a class
    folder) may link out of them, checked before the link's target is looked at; without, the
    folder is one the worker made itself.

    Raises:
        DatasetError: ``path`` is not a readable folder, has fewer than 2 class subfolders,
            or a class subfolder holds no images.
        OutsideRoots: ``path``, a class folder or an image leads out of the data roots.
        EntryLimitReached: the folders hold more entries than ``confinement`` may examine.
    """
    if confinement is not None:
        path = confinement.resolve(path)
    if not path.is_dir():
        raise DatasetError(f"{path} is not a folder")
    try:
        class_dirs = sorted(
            (folder for entry, folder in _entries(path, confinement) if entry.is_dir()),
            key=lambda folder: folder.name,
        )
        per_class = [
            _image_files(folder, confinement)[:max_images_per_class] for folder in class_dirs
        ]
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error.strerror or error}") from error
    if len(class_dirs) < 2:
        raise DatasetError(
            f"{path} must hold one subfolder of images per class, at least 2; "
            f"found {len(class_dirs)}"
        )
    if not any(per_class):
        suffixes = " ".join(sorted(IMAGE_SUFFIXES))
        raise DatasetError(f"no images ({suffixes}) in the class subfolders of {path}")
    empty = [folder.name for folder, files in zip(class_dirs, per_class, strict=True) if not files]
    if empty:
        raise DatasetError(f"class folders hold no images: {', '.join(empty)} (in {path})")
    return FolderScan(
        root=path,
        class_names=tuple(folder.name for folder in class_dirs),
        files=tuple(file for files in per_class for file in files),
        labels=tuple(label for label, files in enumerate(per_class) for _ in files),
        confinement=confinement,
    )


def crop_to_fill(image: Image.Image, size: int) -> np.ndarray:
    """The largest centered square of ``image``, resized to (size, size, 3) uint8 RGB.

    A JPEG not yet loaded is decoded at the smallest of 1/2, 1/4 or 1/8 scale that keeps
    both sides at least twice ``size`` (its decoder's DCT scaling).
    """
    # Measured on 4000x3000 photos to 192 px: 2.4x faster, and as close to a Lanczos resize
    # of the full decode (mean error 1.41 vs 1.35 levels); scaling down to ``size`` itself
    # would be 4x faster but twice as far off (2.47).
    image.draft("RGB", (2 * size, 2 * size))
    rgb = image.convert("RGB")
    side = min(rgb.size)
    left = (rgb.width - side) // 2
    top = (rgb.height - side) // 2
    # Cropped before resizing: resize(box=...) would blend in pixels from outside the square.
    square = rgb.crop((left, top, left + side, top + side))
    return np.asarray(square.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def decode_image(data: bytes, size: int, max_pixels: int | None) -> np.ndarray:
    """The image file ``data`` holds, through :func:`crop_to_fill`.

    Raises:
        TooManyPixelsError: the image has more than ``max_pixels`` pixels (checked from its
            header, before decoding).
        OSError, ValueError, EOFError, Image.DecompressionBombError: it is no usable image
            (all of them in :data:`UNUSABLE_IMAGE_ERRORS`).
    """
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise TooManyPixelsError(
                f"{width}x{height} is {width * height} pixels, over the cap of {max_pixels}"
            )
        return crop_to_fill(image, size)


def load_images(
    scan: FolderScan, image_size: int, cache_dir: Path | None, *, max_pixels: int | None = None
) -> ImageSet:
    """Decode every scanned file with :func:`decode_image`, skipping unusable ones.

    With ``cache_dir``, the result is stored there under a key of the image size, the pixel
    cap, the class names and each file's relative path and content digest; a later call with
    the same key reads it back and decodes nothing.

    Raises:
        DatasetError: a class has no readable image.
    """
    names = [_relative(scan, file) for file in scan.files]

    def key_of(digests: list[str | None]) -> str:
        return cache_key(
            image_size, max_pixels, list(scan.class_names), list(zip(names, digests, strict=True))
        )

    def decode() -> tuple[ImageSet, str]:
        image_set, digests = _decode(scan, image_size, max_pixels)
        return image_set, key_of(digests)

    return cached_image_set(
        cache_dir,
        lambda cache: key_of(DigestIndex(cache, "files").digests(scan.files, digest_file)),
        decode,
    )


def cached_image_set(
    cache_dir: Path | None,
    key: Callable[[Path], str],
    decode: Callable[[], tuple[ImageSet, str]],
) -> ImageSet:
    """The image set cached in ``cache_dir`` under ``key(cache_dir)``; else ``decode()``'s.

    ``key`` must change whenever the decoded images would (see :func:`cache_key`); it is only
    asked for with a ``cache_dir``. ``decode`` returns the images and the key of the bytes
    it actually decoded, under which they are cached: a file that changed after ``key`` was
    made never has its pixels cached under the key of what it held before.
    """
    if cache_dir is None:
        return decode()[0]
    cached = _read_cache(cache_dir / f"{key(cache_dir)}.npz")
    if cached is not None:
        return cached
    image_set, decoded_key = decode()
    _write_cache(cache_dir / f"{decoded_key}.npz", image_set)
    return image_set


def cache_key(*parts: object) -> str:
    """A cache key of JSON-serialisable ``parts`` and the decoder's format version."""
    payload = json.dumps([CACHE_FORMAT, *parts])
    return hashlib.sha256(payload.encode()).hexdigest()


def stratified_split(
    labels: np.ndarray, validation_split: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, validation) indices into ``labels``, holding out a share of each class.

    Each class with n images gives ``round(n * validation_split)`` of them, chosen at random
    from ``seed``, to validation, but at least 1 and at most n - 1 when n >= 2 (none when n is 1).
    """
    if not 0.0 < validation_split < 1.0:
        raise ValueError(f"validation_split must be in (0, 1), got {validation_split}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    validation: list[np.ndarray] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = len(members)
        held_out = min(max(round(count * validation_split), 1), count - 1) if count >= 2 else 0
        validation.append(members[:held_out])
        train.append(members[held_out:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(validation))


def three_way_split(
    labels: np.ndarray, test_split: float | None, validation_split: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted (train, validation, test) indices into ``labels``.

    With ``test_split``, a share of each class is held out as test images first (see
    :func:`stratified_split`), then the rest is split into training and validation images;
    without, the test indices are empty. Both splits are stratified and seeded by ``seed``.
    """
    labels = np.asarray(labels)
    rest, test = (
        stratified_split(labels, test_split, seed)
        if test_split is not None
        else (np.arange(len(labels)), np.arange(0))
    )
    train, validation = stratified_split(labels[rest], validation_split, seed)
    return rest[train], rest[validation], test


def _entries(
    folder: Path, confinement: Confinement | None, wanted: Callable[[str], bool] = bool
) -> Iterator[tuple[os.DirEntry[str], Path]]:
    """The visible entries of ``folder`` whose names are ``wanted``, each with its path under
    ``folder``, checked against ``confinement`` before the caller looks at its target."""
    listing = confinement.entries(folder) if confinement is not None else _scandir(folder)
    for entry in listing:
        if entry.name.startswith(".") or not wanted(entry.name):
            continue
        if confinement is not None:
            confinement.confined(entry)
        yield entry, folder / entry.name


def _scandir(folder: Path) -> Iterator[os.DirEntry[str]]:
    with os.scandir(folder) as listing:
        yield from listing


def _image_files(folder: Path, confinement: Confinement | None) -> list[Path]:
    def image_name(name: str) -> bool:
        return Path(name).suffix.lower() in IMAGE_SUFFIXES

    return sorted(
        file for entry, file in _entries(folder, confinement, image_name) if entry.is_file()
    )


def _relative(scan: FolderScan, file: Path) -> str:
    return file.relative_to(scan.root).as_posix()


def _read(scan: FolderScan, file: Path) -> bytes:
    return file.read_bytes() if scan.confinement is None else scan.confinement.read_bytes(file)


def _decode(
    scan: FolderScan, image_size: int, max_pixels: int | None
) -> tuple[ImageSet, list[str | None]]:
    """The decoded images and the digest of each file's bytes as read (None if unreadable)."""
    images = np.empty((len(scan.files), image_size, image_size, 3), dtype=np.uint8)
    labels: list[int] = []
    skipped: list[str] = []
    digests: list[str | None] = []
    for file, label in zip(scan.files, scan.labels, strict=True):
        data = None
        try:
            data = _read(scan, file)
            images[len(labels)] = decode_image(data, image_size, max_pixels)
        except OutsideRoots:
            raise  # a link swapped in since the scan: the search fails, nothing is read
        except UNUSABLE_IMAGE_ERRORS as error:
            _log.warning("skipping image %s: %s", file, error)
            skipped.append(_relative(scan, file))
        else:
            labels.append(label)
        digests.append(None if data is None else digest_bytes(data))
    label_array = np.asarray(labels, dtype=np.int32)
    counts = np.bincount(label_array, minlength=len(scan.class_names))
    unreadable = [name for name, count in zip(scan.class_names, counts, strict=True) if not count]
    if unreadable:
        raise DatasetError(
            f"no readable images in class folders: {', '.join(unreadable)} (in {scan.root})"
        )
    image_set = ImageSet(
        images=images[: len(labels)],
        labels=label_array,
        class_names=scan.class_names,
        skipped=tuple(skipped),
    )
    return image_set, digests


def _read_cache(cache_file: Path) -> ImageSet | None:
    try:
        with np.load(cache_file, allow_pickle=False) as data:
            return ImageSet(
                images=data["images"],
                labels=data["labels"],
                class_names=tuple(str(name) for name in data["class_names"]),
                skipped=tuple(str(path) for path in data["skipped"]),
                from_cache=True,
            )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        _log.warning("ignoring unreadable cache %s: %s", cache_file, error)
        return None


def _write_cache(cache_file: Path, image_set: ImageSet) -> None:
    write_atomically(
        cache_file,
        lambda out: np.savez(
            out,
            images=image_set.images,
            labels=image_set.labels,
            class_names=np.array(image_set.class_names, dtype=str),
            skipped=np.array(image_set.skipped, dtype=str),
        ),
    )
