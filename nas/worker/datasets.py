"""Folders of class subfolders of images: scan, decode (crop to fill), cache and split.

Imports only NumPy, Pillow, the standard library, the (standard-library) confinement checks
and worker modules that import nothing else, so the API can validate paths with it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from nas.core.data_confinement import OutsideRoots
from nas.core.errors import DatasetError
from nas.core.folders import FolderScan
from nas.worker.atomic_files import write_atomically
from nas.worker.content_digests import DigestIndex, digest_bytes, digest_file

# Part of every cache key: bump it whenever decoding changes, so that stale caches are never read.
CACHE_FORMAT = 2
# What decoding an image may raise for a file that is not an image it can use.
UNUSABLE_IMAGE_ERRORS = (OSError, ValueError, EOFError, Image.DecompressionBombError)

_log = logging.getLogger(__name__)


class TooManyPixelsError(ValueError):
    """An image over the cap on pixels, found before decoding it."""


@dataclass(frozen=True)
class ImageSet:
    """Decoded images: ``images`` is (N, S, S, 3) uint8 RGB and ``labels`` is (N,) int32.

    ``skipped`` lists the files (relative to the scanned root) that could not be decoded;
    ``from_cache`` tells whether the set was read from the cache rather than decoded;
    ``fingerprint`` is its decode cache key (see :func:`cache_key`): the same photos decoded
    at the same size have the same one, wherever they lie.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    skipped: tuple[str, ...]
    from_cache: bool = False
    fingerprint: str | None = None


def crop_to_fill(image: Image.Image, size: int) -> np.ndarray:
    """The largest centered square of ``image``, resized to (size, size, 3) uint8 RGB.

    A JPEG not yet loaded is decoded at the smallest of 1/2, 1/4 or 1/8 scale that keeps
    both sides at least twice ``size`` (its decoder's DCT scaling).
    """
    # At twice the size the result stays as close to a Lanczos resize of the full decode as
    # a bilinear one of it, for a fraction of the time; decoding down to ``size`` itself is
    # faster still but much further off (README, Datasets).
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
    scan: FolderScan,
    image_size: int,
    cache_dir: Path | None,
    *,
    max_pixels: int | None = None,
    on_decoded: Callable[[], None] | None = None,
    on_hashed: Callable[[], None] | None = None,
) -> ImageSet:
    """Decode every scanned file with :func:`decode_image`, skipping unusable ones; after
    each file, ``on_decoded`` is called (it may raise to stop the decoding), and after each
    file's digest for the cache key is known, ``on_hashed``.

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
        image_set, digests = _decode(scan, image_size, max_pixels, on_decoded)
        return image_set, key_of(digests)

    return cached_image_set(
        cache_dir,
        lambda cache: key_of(
            DigestIndex(cache, "files").digests(scan.files, digest_file, on_each=on_hashed)
        ),
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
        image_set, decoded_key = decode()
        return replace(image_set, fingerprint=decoded_key)
    cached_key = key(cache_dir)
    cached = _read_cache(cache_dir / f"{cached_key}.npz")
    if cached is not None:
        return replace(cached, fingerprint=cached_key)
    image_set, decoded_key = decode()
    _write_cache(cache_dir / f"{decoded_key}.npz", image_set)
    return replace(image_set, fingerprint=decoded_key)


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


def _relative(scan: FolderScan, file: Path) -> str:
    return file.relative_to(scan.root).as_posix()


def _read(scan: FolderScan, file: Path) -> bytes:
    return file.read_bytes() if scan.confinement is None else scan.confinement.read_bytes(file)


def _decode(
    scan: FolderScan,
    image_size: int,
    max_pixels: int | None,
    on_decoded: Callable[[], None] | None,
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
        if on_decoded is not None:
            on_decoded()
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
