"""TFRecord shards in the flowers codelab's format: features ``image`` (JPEG bytes) and
``class`` (int64), local or ``gs://`` through TensorFlow's file system.

TensorFlow is imported only when shards are read, so that importing this module is cheap.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from service.data_confinement import Confinement
from worker.datasets import DatasetError, ImageSet, cache_key, cached_image_set, crop_to_fill

IMAGE_FEATURE = "image"
CLASS_FEATURE = "class"

_log = logging.getLogger(__name__)


def load_tfrecords(
    pattern: str,
    *,
    class_names: Sequence[str] | None,
    image_size: int,
    max_images_per_class: int | None,
    cache_dir: Path | None,
    confinement: Confinement | None = None,
) -> ImageSet:
    """Decode the records of every shard matching ``pattern`` with :func:`crop_to_fill`.

    Shards are read in name order and records in file order; with ``max_images_per_class``,
    the first ones of each class are kept. The result is cached under a key of the shards'
    paths, sizes and modification times, the class names, the cap and the image size. With
    ``confinement``, a local pattern is listed by it: every shard must lie in its data roots.

    Raises:
        DatasetError: no shard matches, a record lacks a feature, a class index is out of
            range, or a class has no readable image; or TensorFlow is not installed.
        OutsideRoots: the pattern or a shard leads out of the data roots.
    """
    try:
        import tensorflow as tf
    except ImportError:
        raise DatasetError(
            "reading TFRecord shards needs TensorFlow, which this worker lacks "
            "(install the tensorflow extra, or give a folder of photos)"
        ) from None
    try:
        if confinement is not None and not pattern.startswith("gs://"):
            shards = [str(shard) for shard in confinement.glob(pattern)]
        else:
            shards = sorted(tf.io.gfile.glob(pattern))
    except tf.errors.OpError as error:
        raise DatasetError(f"cannot list the TFRecord shards {pattern}: {error.message}") from None
    if not shards:
        raise DatasetError(f"no TFRecord shard matches {pattern}")
    stats = [tf.io.gfile.stat(shard) for shard in shards]
    key = cache_key(
        "tfrecords",
        image_size,
        list(class_names) if class_names else None,
        max_images_per_class,
        [[shard, stat.length, stat.mtime_nsec] for shard, stat in zip(shards, stats, strict=True)],
    )
    return cached_image_set(
        cache_dir,
        key,
        lambda: _decode(shards, class_names, image_size, max_images_per_class),
    )


def _decode(
    shards: list[str],
    class_names: Sequence[str] | None,
    image_size: int,
    max_images_per_class: int | None,
) -> ImageSet:
    images: list[np.ndarray] = []
    labels: list[int] = []
    skipped: list[str] = []
    taken: dict[int, int] = {}
    for shard, index, jpeg, label in _records(shards):
        if class_names is not None and not 0 <= label < len(class_names):
            raise DatasetError(
                f"{shard}: record {index} has class {label}, but class_names names "
                f"{len(class_names)} classes (0..{len(class_names) - 1})"
            )
        if label < 0:
            raise DatasetError(f"{shard}: record {index} has a negative class {label}")
        if max_images_per_class is not None and taken.get(label, 0) >= max_images_per_class:
            continue
        try:
            with Image.open(io.BytesIO(jpeg)) as image:
                images.append(crop_to_fill(image, image_size))
        except (OSError, ValueError, EOFError, Image.DecompressionBombError) as error:
            _log.warning("skipping unreadable image in %s, record %d: %s", shard, index, error)
            skipped.append(f"{shard}#{index}")
            continue
        labels.append(label)
        taken[label] = taken.get(label, 0) + 1
    names = tuple(class_names) if class_names else tuple(str(i) for i in range(max(taken) + 1))
    missing = [name for label, name in enumerate(names) if not taken.get(label)]
    if missing:
        raise DatasetError(f"no readable images of classes {', '.join(missing)} in the shards")
    return ImageSet(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int32),
        class_names=names,
        skipped=tuple(skipped),
    )


def _records(shards: list[str]) -> Iterator[tuple[str, int, bytes, int]]:
    """(shard, record index, JPEG bytes, class) of every record, checking its features."""
    import tensorflow as tf

    for shard in shards:
        index = -1
        try:
            for index, raw in enumerate(tf.data.TFRecordDataset(shard).as_numpy_iterator()):
                example = tf.train.Example.FromString(raw)
                yield shard, index, *_features(example, shard, index)
        except tf.errors.OpError as error:
            raise DatasetError(
                f"{shard} is not a readable TFRecord file (after record {index}): {error.message}"
            ) from None


def _features(example: object, shard: str, index: int) -> tuple[bytes, int]:
    features = example.features.feature  # type: ignore[attr-defined]
    image, label = features.get(IMAGE_FEATURE), features.get(CLASS_FEATURE)
    if image is None or len(image.bytes_list.value) != 1:
        raise DatasetError(_missing(IMAGE_FEATURE, "JPEG bytes", shard, index))
    if label is None or len(label.int64_list.value) != 1:
        raise DatasetError(_missing(CLASS_FEATURE, "int64", shard, index))
    return image.bytes_list.value[0], int(label.int64_list.value[0])


def _missing(feature: str, kind: str, shard: str, index: int) -> str:
    return (
        f"{shard}: record {index} has no feature '{feature}' ({kind}); expected the codelab's "
        f"format: '{IMAGE_FEATURE}' (JPEG bytes) and '{CLASS_FEATURE}' (int64)"
    )
