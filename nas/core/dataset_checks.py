"""Submit-time checks of a search's dataset: data roots, buckets, globs and test classes.

Only cheap checks happen here (listing folders and globs, never decoding); what needs the
photos themselves is checked by the worker, which fails the search with a readable message.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from nas.core.data_confinement import Confinement, EntryLimitReached, OutsideRoots
from nas.core.errors import DatasetError, field_error
from nas.core.folders import scan_folder
from nas.core.specs import TF_FLOWERS_CLASSES, DatasetSpec

GCS_SCHEME = "gs://"


def check_dataset(
    dataset: DatasetSpec,
    data_roots: list[Path],
    data_buckets: Sequence[str],
    max_entries: int | None = None,
) -> DatasetSpec:
    """The dataset with its local paths resolved, or a 422 naming the field that is wrong.

    At most ``max_entries`` folder entries are listed in all: past them, the rest is left
    to the worker, which checks every file when it claims the search.
    """
    confinement = Confinement(data_roots, max_entries)
    update: dict[str, str] = {}
    class_names: tuple[str, ...] | None = None
    if dataset.path is not None:
        path, class_names = _checked_folder(
            dataset.path, dataset.max_images_per_class, confinement, "path"
        )
        update["path"] = str(path)
    elif dataset.tfrecords is not None:
        update["tfrecords"] = _checked_tfrecords(dataset.tfrecords, confinement, data_buckets)
        class_names = tuple(dataset.class_names) if dataset.class_names else None
    else:
        class_names = TF_FLOWERS_CLASSES
    if dataset.test_path is not None:
        test_path, test_classes = _checked_folder(dataset.test_path, None, confinement, "test_path")
        if None not in (class_names, test_classes) and test_classes != class_names:
            raise field_error(
                ("dataset", "test_path"),
                f"its class folders ({', '.join(test_classes)}) differ from the training "
                f"classes ({', '.join(class_names)})",
                dataset.test_path,
            )
        update["test_path"] = str(test_path)
    return dataset.model_copy(update=update)


def _checked_folder(
    raw_path: str, max_images_per_class: int | None, confinement: Confinement, field: str
) -> tuple[Path, tuple[str, ...] | None]:
    """The folder resolved and its class names; None for them when it has more entries than
    the confinement may list."""
    loc = ("dataset", field)
    with _refused_at(loc, raw_path):
        path = confinement.resolve(raw_path)
        try:
            return path, scan_folder(path, max_images_per_class, confinement).class_names
        except EntryLimitReached:
            return path, None


def _checked_tfrecords(pattern: str, confinement: Confinement, data_buckets: Sequence[str]) -> str:
    """The glob, its fixed folder resolved; it must match a shard, all inside the roots."""
    loc = ("dataset", "tfrecords")
    if pattern.startswith(GCS_SCHEME):
        bucket = pattern[len(GCS_SCHEME) :].split("/", 1)[0]
        if bucket not in data_buckets:
            raise field_error(
                loc, "reads a Cloud Storage bucket not allowed by NAS_DATA_BUCKETS", pattern
            )
        return pattern  # listed by the worker, which has TensorFlow's file system
    if "://" in pattern:
        raise field_error(loc, "must be a local glob or a gs:// glob", pattern)
    with _refused_at(loc, pattern):
        resolved = confinement.resolve_glob(pattern)
        try:
            shards = confinement.glob(resolved)
        except EntryLimitReached:
            return resolved
    if not shards:
        raise field_error(loc, "matches no file", pattern)
    return resolved


@contextmanager
def _refused_at(loc: tuple[str, ...], raw: str) -> Iterator[None]:
    """Dataset errors and paths out of the roots as a 422 at ``loc``."""
    try:
        yield
    except (DatasetError, OutsideRoots) as error:
        raise field_error(loc, str(error), raw) from None
