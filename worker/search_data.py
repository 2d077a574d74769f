"""The photos of a search from any dataset form, split into train, validation and test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.settings import Settings
from service.specs import DatasetSpec
from worker.datasets import DatasetError, ImageSet, load_images, scan_folder, three_way_split
from worker.tf_flowers import fetch_tf_flowers
from worker.tfrecords import load_tfrecords


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
        }


def load_search_data(dataset: DatasetSpec, settings: Settings) -> SearchData:
    """Decode (or read from the cache) the dataset's photos and split them.

    Raises:
        DatasetError: the photos cannot be used; the message says why.
    """
    images = _load_source(dataset, settings)
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
    elif dataset.test_path is not None:
        test = load_images(
            scan_folder(Path(dataset.test_path)),
            dataset.image_size,
            settings.cache_dir,
            max_pixels=settings.limit_image_pixels,
        )
        if test.class_names != images.class_names:
            raise DatasetError(
                f"the classes of dataset.test_path ({', '.join(test.class_names)}) differ from "
                f"the training classes ({', '.join(images.class_names)})"
            )
    return SearchData(images=images, train=train, validation=validation, test=test)


def _load_source(dataset: DatasetSpec, settings: Settings) -> ImageSet:
    if dataset.tfrecords is not None:
        return load_tfrecords(
            dataset.tfrecords,
            class_names=dataset.class_names,
            image_size=dataset.image_size,
            max_images_per_class=dataset.max_images_per_class,
            cache_dir=settings.cache_dir,
            max_classes=settings.limit_classes,
            max_pixels=settings.limit_image_pixels,
        )
    if dataset.path is not None:
        folder = Path(dataset.path)
    else:
        folder = fetch_tf_flowers(
            settings.cache_dir, settings.tf_flowers_url, settings.download_timeout_seconds
        )
    scan = scan_folder(folder, dataset.max_images_per_class)
    return load_images(
        scan, dataset.image_size, settings.cache_dir, max_pixels=settings.limit_image_pixels
    )
