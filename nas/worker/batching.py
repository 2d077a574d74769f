"""Batches of as few shapes as possible: XLA compiles a step once per input shape, so a last
batch smaller than the others costs a second compilation of the training step (as long as
the first) and of the evaluation step. NumPy only."""

from __future__ import annotations

import numpy as np

#: Validation images evaluated in one batch at most, in pixels: 512 photos of 192 px.
VALIDATION_BATCH_PIXELS = 512 * 192 * 192


def full_batches(indices: np.ndarray, batch_size: int, seed: int) -> np.ndarray:
    """``indices`` topped up to a multiple of ``batch_size`` with some of themselves, drawn at
    random without repeats, so that every batch is full. Fewer than one batch stay as they are
    (one batch, one shape)."""
    shortfall = -len(indices) % batch_size
    if len(indices) <= batch_size or shortfall == 0:
        return indices
    extra = np.random.default_rng(seed).choice(indices, size=shortfall, replace=False)
    return np.concatenate([indices, extra])


def validation_batch_size(images: int, image_size: int, batch_size: int) -> int:
    """All validation images in one batch where they fit ``VALIDATION_BATCH_PIXELS``, so the
    evaluation step has one shape; ``batch_size`` otherwise. Metrics are the same either way."""
    return images if images * image_size**2 <= VALIDATION_BATCH_PIXELS else batch_size
