"""Submit-time checks of a search's dataset: data roots, buckets, globs and test classes.

Only cheap checks happen here (listing folders and globs, never decoding); what needs the
photos themselves is checked by the worker, which fails the search with a readable message.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

from service.field_errors import field_error
from service.specs import DatasetSpec
from worker.datasets import DatasetError, FolderScan, scan_folder
from worker.tf_flowers import TF_FLOWERS_CLASSES

OUTSIDE_ROOTS = "must lie inside one of the configured data roots (NAS_DATA_ROOTS)"
GLOB_CHARACTERS = frozenset("*?[")
GCS_SCHEME = "gs://"


def resolve_inside_roots(
    raw_path: str, roots: list[Path], loc: tuple[str, ...] = ("dataset", "path")
) -> Path:
    """The path with symlinks resolved, if it lies inside a data root; else a 422 at ``loc``.

    The answer is the same whether or not an outside path exists (or cannot even be
    resolved), so the API cannot be used to probe the file system.
    """
    try:
        resolved = Path(raw_path).resolve()
    except (OSError, ValueError):  # a NUL byte, a loop of links
        resolved = None
    if resolved is None or not _inside(resolved, roots):
        raise field_error(loc, OUTSIDE_ROOTS, raw_path)
    return resolved


def check_dataset(
    dataset: DatasetSpec, data_roots: list[Path], data_buckets: Sequence[str]
) -> DatasetSpec:
    """The dataset with its local paths resolved, or a 422 naming the field that is wrong."""
    update: dict[str, str] = {}
    class_names: tuple[str, ...] | None = None
    if dataset.path is not None:
        scan = _checked_folder(dataset.path, dataset.max_images_per_class, data_roots, "path")
        update["path"], class_names = str(scan.root), scan.class_names
    elif dataset.tfrecords is not None:
        update["tfrecords"] = _checked_tfrecords(dataset.tfrecords, data_roots, data_buckets)
        class_names = tuple(dataset.class_names) if dataset.class_names else None
    else:
        class_names = TF_FLOWERS_CLASSES
    if dataset.test_path is not None:
        test = _checked_folder(dataset.test_path, None, data_roots, "test_path")
        if class_names is not None and test.class_names != class_names:
            raise field_error(
                ("dataset", "test_path"),
                f"its class folders ({', '.join(test.class_names)}) differ from the training "
                f"classes ({', '.join(class_names)})",
                dataset.test_path,
            )
        update["test_path"] = str(test.root)
    return dataset.model_copy(update=update)


def _checked_folder(
    raw_path: str, max_images_per_class: int | None, data_roots: list[Path], field: str
) -> FolderScan:
    loc = ("dataset", field)
    path = resolve_inside_roots(raw_path, data_roots, loc)
    try:
        scan = scan_folder(path, max_images_per_class)
    except DatasetError as error:
        raise field_error(loc, str(error), raw_path) from None
    # Class folders or images may be links; none may lead out of the data roots.
    if not all(_inside(file.resolve(), data_roots) for file in scan.files):
        raise field_error(
            loc, "holds links to files outside the configured data roots (NAS_DATA_ROOTS)", raw_path
        )
    return scan


def _checked_tfrecords(pattern: str, data_roots: list[Path], data_buckets: Sequence[str]) -> str:
    """The glob, its fixed folder resolved; every shard it matches must be in the roots."""
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
    # The part before the first wildcard must lie in the roots before anything is listed, so
    # that a glob cannot tell whether files exist outside them.
    parts = Path(pattern).parts
    fixed = next((i for i, part in enumerate(parts) if GLOB_CHARACTERS & set(part)), len(parts))
    folder = resolve_inside_roots(str(Path(*parts[:fixed])) if fixed else ".", data_roots, loc)
    resolved = str(folder.joinpath(*parts[fixed:]))
    # Hidden files too: TensorFlow's glob, which the worker lists shards with, matches them.
    matches = glob.glob(resolved, include_hidden=True)
    shards = [Path(match) for match in matches if Path(match).is_file()]
    if not shards:
        raise field_error(loc, "matches no file", pattern)
    if not all(_inside(shard.resolve(), data_roots) for shard in shards):
        raise field_error(loc, OUTSIDE_ROOTS, pattern)
    return resolved


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)
