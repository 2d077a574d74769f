"""A search's prepared data as one file in its artifacts: the decoded photos, their labels and
class names, the train/validation split and the test photos, as plain arrays (an ``.npz``
that loads without pickle), written aside and renamed into place."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from nas.core.errors import DatasetError
from nas.worker.atomic_files import write_atomically
from nas.worker.datasets import ImageSet
from nas.worker.search_data import SearchData

#: The arrays of the photos trials train and validate on, and of the test photos (if any).
_TRAINING, _TEST = "", "test_"


def write_prepared(path: Path, data: SearchData) -> None:
    """Write ``data`` to ``path`` whole: a reader sees all of it or no file."""
    arrays = _image_set_arrays(_TRAINING, data.images) | {
        "train": data.train,
        "validation": data.validation,
    }
    if data.test is not None:
        arrays |= _image_set_arrays(_TEST, data.test)
    write_atomically(path, lambda out: np.savez(out, **arrays))


def read_prepared(path: Path) -> SearchData:
    """The data :func:`write_prepared` wrote to ``path``.

    Raises:
        DatasetError: the file is missing or unreadable (the message names it).
    """
    try:
        with np.load(path, allow_pickle=False) as arrays:
            images = _image_set(_TRAINING, arrays)
            test = _image_set(_TEST, arrays) if f"{_TEST}labels" in arrays.files else None
            return SearchData(
                images=images, train=arrays["train"], validation=arrays["validation"], test=test
            )
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise DatasetError(
            f"the search's prepared data {path} cannot be read ({error}); every worker must "
            "see the same NAS_ARTIFACTS_DIR"
        ) from None


def _image_set_arrays(prefix: str, image_set: ImageSet) -> dict[str, np.ndarray]:
    return {
        f"{prefix}images": image_set.images,
        f"{prefix}labels": image_set.labels,
        f"{prefix}class_names": np.array(image_set.class_names, dtype=str),
        f"{prefix}skipped": np.array(image_set.skipped, dtype=str),
        f"{prefix}from_cache": np.array(image_set.from_cache),
        # Decode cache keys are hex: the empty string stands for none.
        f"{prefix}fingerprint": np.array(image_set.fingerprint or ""),
    }


def _image_set(prefix: str, arrays: Any) -> ImageSet:
    return ImageSet(
        images=arrays[f"{prefix}images"],
        labels=arrays[f"{prefix}labels"],
        class_names=tuple(str(name) for name in arrays[f"{prefix}class_names"]),
        skipped=tuple(str(name) for name in arrays[f"{prefix}skipped"]),
        from_cache=bool(arrays[f"{prefix}from_cache"]),
        fingerprint=str(arrays[f"{prefix}fingerprint"]) or None,
    )
