"""TFRecord shards in the flowers codelab's format, written by tests from real photos."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nas.core.folders import scan_folder


def write_shards(
    photos: Path,
    dest: Path,
    shards: int = 2,
    *,
    without: str | None = None,
    classes: Sequence[int] | None = None,
) -> list[Path]:
    """Write the photos of a folder of class subfolders into ``shards`` files in ``dest``.

    Each record holds ``image`` (the JPEG file's bytes) and ``class`` (the index of its folder
    in name order, or ``classes[index]``), round-robin over the shards; ``without`` leaves
    that feature out.
    """
    import tensorflow as tf

    scan = scan_folder(photos)
    dest.mkdir(parents=True, exist_ok=True)
    paths = [dest / f"flowers-{index:02d}-of-{shards:02d}.tfrec" for index in range(shards)]
    writers = [tf.io.TFRecordWriter(str(path)) for path in paths]
    try:
        for position, (file, label) in enumerate(zip(scan.files, scan.labels, strict=True)):
            features = {
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[file.read_bytes()])),
                "class": tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[classes[label] if classes else label])
                ),
            }
            features.pop(without, None)
            example = tf.train.Example(features=tf.train.Features(feature=features))
            writers[position % shards].write(example.SerializeToString())
    finally:
        for writer in writers:
            writer.close()
    return paths
