"""Write the handwritten digits as a folder of class subfolders, for the search benchmark.

The data are the UCI ML hand-written digits (1,797 grayscale images of 8x8 pixels, 0-16,
from 43 writers), as scikit-learn ships them inside its wheel (``load_digits``): nothing is
downloaded. Each image is scaled to 0-255, upscaled bilinearly to 32x32 and written as an RGB
PNG into ``0`` .. ``9``, so the service's image pipeline takes the folder as it takes photos.
The files are named by their index in the data set, so running it again rewrites the same
folder. The folder is built, never committed (``var/`` is ignored). Usage:

    python -m benchmarks.make_digits [--output var/datasets/digits] [--size 32]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from benchmarks.harness import DIGITS

#: The brightest value of a pixel in scikit-learn's digits.
DIGITS_MAX_VALUE = 16


def write_digits(output: Path, size: int) -> int:
    """Write every digit as ``output/<class>/<index>.png`` (``size`` px, RGB); the count."""
    digits = load_digits()
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        gray = np.round(pixels * (255 / DIGITS_MAX_VALUE)).astype(np.uint8)
        image = Image.fromarray(gray).resize((size, size), Image.Resampling.BILINEAR)
        folder = output / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        image.convert("RGB").save(folder / f"{index:04d}.png")
    return len(digits.images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DIGITS, help="folder to write")
    parser.add_argument("--size", type=int, default=32, help="side of each image, in pixels")
    args = parser.parse_args(argv)
    count = write_digits(args.output, args.size)
    print(f"wrote {count} digits into {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
