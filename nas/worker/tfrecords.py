"""TFRecord shards in the flowers codelab's format: features ``image`` (JPEG bytes) and
``class`` (int64), local or ``gs://`` through TensorFlow's file system.

TensorFlow is imported only when shards are read, so that importing this module is cheap.

Local shards are cached under a digest of their records, like folders under their files'
bytes. Remote shards (``gs://``) are cached under their paths, sizes and modification
times: those are full object paths in buckets the operator confines searches to, which an
object's writer cannot give to another object, and reading every object to hash it would
cost as much as decoding it, which the cache is there to avoid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nas.core.data_confinement import Confinement
from nas.core.errors import DatasetError
from nas.worker.content_digests import DigestIndex, new_digest
from nas.worker.datasets import (
    UNUSABLE_IMAGE_ERRORS,
    ImageSet,
    cache_key,
    cached_image_set,
    decode_image,
)

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
    max_classes: int,
    max_pixels: int | None = None,
    confinement: Confinement | None = None,
    on_decoded: Callable[[], None] | None = None,
    on_hashed: Callable[[], None] | None = None,
) -> ImageSet:
    """Decode the records of every shard matching ``pattern`` with :func:`decode_image`;
    after each image, ``on_decoded`` is called (it may raise to stop the decoding), and
    after each local shard's digest for the cache key is known, ``on_hashed``.

    Shards are read in name order and records in file order; with ``max_images_per_class``,
    the first ones of each class are kept. Class indices must lie in 0..``max_classes`` - 1
    (and name one of ``class_names``). The result is cached under a key of the shards'
    contents (see the module's docstring), the class names, the caps and the image size. With
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

    def key_of(shard_keys: list[Any]) -> str:
        return cache_key(
            "tfrecords",
            image_size,
            list(class_names) if class_names else None,
            max_images_per_class,
            max_classes,
            max_pixels,
            list(zip(shards, shard_keys, strict=True)),
        )

    # Remote shards are keyed as they were before decoding: one that changes meanwhile is
    # cached under a key no later search makes.
    remote_key = None
    if "://" in pattern:
        stats = [tf.io.gfile.stat(shard) for shard in shards]
        remote_key = key_of([[stat.length, stat.mtime_nsec] for stat in stats])

    def key(cache: Path) -> str:
        return remote_key or key_of(
            DigestIndex(cache, "tfrecords").digests(
                [Path(shard) for shard in shards],
                lambda shard: _digest_records(str(shard)),
                on_each=on_hashed,
            )
        )

    def decode() -> tuple[ImageSet, str]:
        image_set, digests = _decode(
            shards,
            class_names,
            image_size,
            max_images_per_class,
            max_classes,
            max_pixels,
            on_decoded,
        )
        return image_set, remote_key or key_of(digests)

    return cached_image_set(cache_dir, key, decode)


def _decode(
    shards: list[str],
    class_names: Sequence[str] | None,
    image_size: int,
    max_images_per_class: int | None,
    max_classes: int,
    max_pixels: int | None,
    on_decoded: Callable[[], None] | None,
) -> tuple[ImageSet, list[str]]:
    """The decoded images and the digest of each shard's records as read."""
    images: list[np.ndarray] = []
    labels: list[int] = []
    skipped: list[str] = []
    taken: dict[int, int] = {}
    digests = {shard: new_digest() for shard in shards}
    for shard, index, raw, (jpeg, label) in _records(shards):
        _update(digests[shard], raw)
        _check_class(label, class_names, max_classes, shard, index)
        if max_images_per_class is not None and taken.get(label, 0) >= max_images_per_class:
            continue
        try:
            images.append(decode_image(jpeg, image_size, max_pixels))
        except UNUSABLE_IMAGE_ERRORS as error:
            _log.warning("skipping image in %s, record %d: %s", shard, index, error)
            skipped.append(f"{shard}#{index}")
        else:
            labels.append(label)
            taken[label] = taken.get(label, 0) + 1
        if on_decoded is not None:
            on_decoded()
    names = tuple(class_names) if class_names else tuple(str(i) for i in range(max(taken) + 1))
    missing = [name for label, name in enumerate(names) if not taken.get(label)]
    if missing:
        raise DatasetError(f"no readable images of classes {', '.join(missing)} in the shards")
    image_set = ImageSet(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int32),
        class_names=names,
        skipped=tuple(skipped),
    )
    return image_set, [digests[shard].hexdigest() for shard in shards]


def _check_class(
    label: int, class_names: Sequence[str] | None, max_classes: int, shard: str, index: int
) -> None:
    if class_names is not None and not 0 <= label < len(class_names):
        raise DatasetError(
            f"{shard}: record {index} has class {label}, but class_names names "
            f"{len(class_names)} classes (0..{len(class_names) - 1})"
        )
    if not 0 <= label < max_classes:
        raise DatasetError(
            f"{shard}: record {index} has class {label} (feature '{CLASS_FEATURE}'), "
            f"outside 0..{max_classes - 1} (NAS_LIMIT_CLASSES)"
        )


def _digest_records(shard: str) -> str:
    """The digest of the shard's records, as :func:`_decode` computes it while reading."""
    digest = new_digest()
    for _, _, record in _raw_records([shard]):
        _update(digest, record)
    return digest.hexdigest()


def _update(digest: Any, record: bytes) -> None:
    # Each record framed by its length: no two sequences of records hash alike.
    digest.update(len(record).to_bytes(8, "little"))
    digest.update(record)


def _records(shards: list[str]) -> Iterator[tuple[str, int, bytes, tuple[bytes, int]]]:
    """(shard, record index, record, (JPEG bytes, class)) of every record, checking its
    features."""
    import tensorflow as tf

    for shard, index, raw in _raw_records(shards):
        example = tf.train.Example.FromString(raw)
        yield shard, index, raw, _features(example, shard, index)


def _raw_records(shards: list[str]) -> Iterator[tuple[str, int, bytes]]:
    """(shard, record index, serialized record) of every record of the shards, in order."""
    import tensorflow as tf

    for shard in shards:
        index = -1
        try:
            for index, raw in enumerate(tf.data.TFRecordDataset(shard).as_numpy_iterator()):
                yield shard, index, raw
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
