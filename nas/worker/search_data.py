"""The photos of a search from any dataset form, split into train, validation and test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas.core.data_confinement import Confinement, OutsideRoots, fixed_part
from nas.core.errors import DatasetError
from nas.core.folders import FolderScan, scan_folder
from nas.core.settings import Settings
from nas.core.specs import DatasetSpec
from nas.worker.datasets import ImageSet, load_images, three_way_split
from nas.worker.tf_flowers import fetch_tf_flowers
from nas.worker.tfrecords import load_tfrecords


@dataclass(frozen=True)
class SearchData:
    """Decoded photos: ``train`` and ``validation`` index ``images``; ``test`` holds the
    photos no trial sees (from ``test_split`` or ``test_path``), or is None."""

    images: ImageSet
    train: np.ndarray
    validation: np.ndarray
    test: ImageSet | None

    def info(self) -> dict[str, Any]:
        """What the search records about its data."""
        images = self.images
        return {
            "class_names": list(images.class_names),
            "images": len(images.labels),
            "train_images": len(self.train),
            "validation_images": len(self.validation),
            "test_images": 0 if self.test is None else len(self.test.labels),
            "skipped_images": len(images.skipped),
            "skipped_files": list(images.skipped[:20]),
            "from_cache": images.from_cache and (self.test is None or self.test.from_cache),
            "fingerprint": images.fingerprint,
        }


def unreadable_here(dataset: DatasetSpec, settings: Settings) -> list[str]:
    """The dataset's local sources that this host cannot read inside its data roots, each as
    ``dataset.<field> <path>``: out of the roots (whether or not they exist there), missing
    or unreadable. Cheap: each folder (a TFRecord glob's, or its one file) is looked at, not
    listed. The photos of ``name`` and of gs:// shards are fetched by whoever prepares them.
    """
    confinement = Confinement(settings.resolved_data_roots())
    tfrecords = dataset.tfrecords
    sources = (
        ("path", dataset.path, dataset.path),
        ("tfrecords", tfrecords, None if tfrecords is None or "://" in tfrecords else tfrecords),
        ("test_path", dataset.test_path, dataset.test_path),
    )
    return [
        f"dataset.{field} {raw}"
        for field, raw, local in sources
        if local is not None
        and not confinement.readable(fixed_part(local) if field == "tfrecords" else local)
    ]


def load_search_data(
    dataset: DatasetSpec,
    settings: Settings,
    on_decoded: Callable[[], None] | None = None,
    on_progress: Callable[[], None] | None = None,
) -> SearchData:
    """Decode (or read from the cache) the dataset's photos and split them, first checking
    again that every file lies inside the data roots (links may have changed since submit).
    ``on_decoded`` is called after each photo decoded, ``on_progress`` after each other step
    of the reading (a file hashed for the decode cache's key, or its digest remembered; a
    chunk of a download, a file extracted); either may raise to stop.

    Raises:
        DatasetError: the photos cannot be used; the message says why.
    """
    confinement = Confinement(settings.resolved_data_roots())
    test_scan = None
    # Checked first, so that a test folder out of the roots costs no decoding.
    if dataset.test_path is not None:
        with _confined("test_path"):
            test_scan = scan_folder(Path(dataset.test_path), confinement=confinement)
    images = _load_source(dataset, settings, confinement, on_decoded, on_progress)
    train, validation, held_out = three_way_split(
        images.labels, dataset.test_split, dataset.validation_split, dataset.seed
    )
    test = None
    if dataset.test_split is not None:
        test = ImageSet(
            images=images.images[held_out],
            labels=images.labels[held_out],
            class_names=images.class_names,
            skipped=(),
            from_cache=images.from_cache,
        )
    elif test_scan is not None:
        with _confined("test_path"):
            test = load_images(
                test_scan,
                dataset.image_size,
                settings.cache_dir,
                max_pixels=settings.limit_image_pixels,
                on_decoded=on_decoded,
                on_hashed=on_progress,
            )
        if test.class_names != images.class_names:
            raise DatasetError(
                f"the classes of dataset.test_path ({', '.join(test.class_names)}) differ from "
                f"the training classes ({', '.join(images.class_names)})"
            )
    return SearchData(images=images, train=train, validation=validation, test=test)


def _load_source(
    dataset: DatasetSpec,
    settings: Settings,
    confinement: Confinement,
    on_decoded: Callable[[], None] | None,
    on_progress: Callable[[], None] | None,
) -> ImageSet:
    if dataset.tfrecords is not None:
        with _confined("tfrecords"):
            return load_tfrecords(
                dataset.tfrecords,
                class_names=dataset.class_names,
                image_size=dataset.image_size,
                max_images_per_class=dataset.max_images_per_class,
                cache_dir=settings.cache_dir,
                max_classes=settings.limit_classes,
                max_pixels=settings.limit_image_pixels,
                confinement=confinement,
                on_decoded=on_decoded,
                on_hashed=on_progress,
            )
    if dataset.path is None:
        folder = fetch_tf_flowers(
            settings.cache_dir,
            settings.tf_flowers_url,
            settings.download_timeout_seconds,
            on_progress=on_progress,
        )
        scan = scan_folder(folder, dataset.max_images_per_class)
        return _decode(scan, dataset, settings, on_decoded, on_progress)
    with _confined("path"):
        scan = scan_folder(Path(dataset.path), dataset.max_images_per_class, confinement)
        return _decode(scan, dataset, settings, on_decoded, on_progress)


def _decode(
    scan: FolderScan,
    dataset: DatasetSpec,
    settings: Settings,
    on_decoded: Callable[[], None] | None,
    on_progress: Callable[[], None] | None,
) -> ImageSet:
    return load_images(
        scan,
        dataset.image_size,
        settings.cache_dir,
        max_pixels=settings.limit_image_pixels,
        on_decoded=on_decoded,
        on_hashed=on_progress,
    )


@contextmanager
def _confined(field: str) -> Iterator[None]:
    """A path out of the data roots (swapped in since the API checked it) as the API's
    refusal of ``dataset.<field>``, naming nothing outside."""
    try:
        yield
    except OutsideRoots as error:
        raise DatasetError(f"dataset.{field} {error}") from None
