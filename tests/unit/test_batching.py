"""Batch shapes that XLA compiles once."""

from __future__ import annotations

import numpy as np

from nas.worker.batching import VALIDATION_BATCH_PIXELS, full_batches, validation_batch_size


def test_training_indices_are_topped_up_to_full_batches() -> None:
    indices = np.arange(1999) * 2
    padded = full_batches(indices, 128, seed=0)
    assert len(padded) == 2048
    np.testing.assert_array_equal(padded[:1999], indices)
    extra = padded[1999:]
    assert len(set(extra.tolist())) == len(extra), "no image is repeated twice"
    assert set(extra.tolist()) <= set(indices.tolist())
    np.testing.assert_array_equal(full_batches(indices, 128, seed=0), padded)


def test_whole_batches_and_single_batches_are_left_alone() -> None:
    exact = np.arange(256)
    assert full_batches(exact, 128, seed=0) is exact
    small = np.arange(40)
    assert full_batches(small, 128, seed=0) is small


def test_validation_fits_one_batch_up_to_the_pixel_budget() -> None:
    assert validation_batch_size(499, 192, 128) == 499
    assert validation_batch_size(512, 192, 128) == 512
    assert validation_batch_size(513, 192, 128) == 128
    assert VALIDATION_BATCH_PIXELS < 10_000 * 64**2
    assert validation_batch_size(10_000, 64, 32) == 32
