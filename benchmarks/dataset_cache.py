"""Decoding against reading the cache, for a folder and for TFRecord shards of the same photos.

Writes the photos into TFRecord shards in a temporary folder (deleted at the end), then times
a cold load (decode and write the cache), a warm one (cache hit, the files' digests
remembered) and a cache hit that hashes every file again (as after the files were copied or
touched) of each form, and prints the sizes of the stratified 3-way split. Usage:
python -m benchmarks.dataset_cache [DATA_DIR] [--image-size 64] [--shards 16]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.harness import FLOWERS
from nas.core.folders import scan_folder
from nas.core.settings import Settings
from nas.worker.datasets import ImageSet, load_images, three_way_split
from nas.worker.tfrecords import load_tfrecords
from tests.support.tfrecord_shards import write_shards


def timed(load: Callable[[], ImageSet]) -> tuple[ImageSet, float]:
    started = time.perf_counter()
    images = load()
    return images, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data_dir", nargs="?", type=Path, default=FLOWERS)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--test-split", type=float, default=0.15)
    parser.add_argument("--validation-split", type=float, default=0.2)
    args = parser.parse_args()
    settings = Settings()
    with tempfile.TemporaryDirectory() as scratch:
        cache, shards = Path(scratch) / "cache", Path(scratch) / "shards"
        write_shards(args.data_dir, shards, args.shards)
        loaders = {
            "folder": lambda: load_images(
                scan_folder(args.data_dir),
                args.image_size,
                cache,
                max_pixels=settings.limit_image_pixels,
            ),
            "tfrecords": lambda: load_tfrecords(
                f"{shards}/*.tfrec",
                class_names=None,
                image_size=args.image_size,
                max_images_per_class=None,
                cache_dir=cache,
                max_classes=settings.limit_classes,
                max_pixels=settings.limit_image_pixels,
            ),
        }
        for form, load in loaders.items():
            cold, decode_seconds = timed(load)
            warm, hit_seconds = timed(load)
            shutil.rmtree(cache / "digests")
            rehashed, rehash_seconds = timed(load)
            assert not cold.from_cache and warm.from_cache and rehashed.from_cache
            print(
                f"{form:>9}: {len(cold.labels)} photos at {args.image_size} px: decode "
                f"{decode_seconds:.2f} s, cache hit {hit_seconds:.3f} s "
                f"({decode_seconds / hit_seconds:.0f}x), hashing every file "
                f"{rehash_seconds:.3f} s"
            )
    train, validation, test = three_way_split(
        cold.labels, args.test_split, args.validation_split, seed=0
    )
    print(
        f"split with test_split {args.test_split}, validation_split {args.validation_split}: "
        f"{len(train)} train / {len(validation)} validation / {len(test)} test"
    )


if __name__ == "__main__":
    main()
