"""Forward FLOPs per image of the spaces' models from their hyperparameters alone, without
Keras (like ``parameter_counts``): a trial over the cap fails before a layer is built.

An estimate: 2 FLOPs (a multiply and an add) per weight use of every conv and dense layer;
activations, normalization and pooling, a few percent, are left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from nas.core.spaces.codelab_v2 import DENSE_HEADS, block_filters


def conv_flops(side: int, channels: int, filters: int, size: int) -> int:
    """A ``size`` x ``size`` conv of ``channels`` to ``filters`` with a ``side`` x ``side``
    output."""
    return 2 * side * side * size * size * channels * filters


def head_flops(side: int, channels: int, head: str, dense_units: int | None, classes: int) -> int:
    """The dense layers of the head on ``side`` x ``side`` x ``channels`` features."""
    features = side * side * channels if head == "flatten_dense" else channels
    flops = 0
    if head in DENSE_HEADS:
        if dense_units is None:
            raise ValueError(f"a {head} head needs dense_units")
        flops, features = 2 * features * dense_units, dense_units
    return flops + 2 * features * classes


def convnet_v1_flops(
    image_size: int,
    classes: int,
    blocks: Sequence[tuple[int, bool]],
    head: str,
    dense_units: int | None,
) -> int:
    """A version 1 model of ``blocks`` (filters, whether a 1x1 conv follows) and ``head``."""
    flops, channels, side = 0, 3, image_size
    for filters, one_by_one in blocks:
        flops += conv_flops(side, channels, filters, 3)
        channels = filters
        if one_by_one:
            half = max(filters // 2, 1)
            flops += conv_flops(side, channels, half, 1)
            channels = half
        side //= 2
    return flops + head_flops(side, channels, head, dense_units, classes)


def codelab_v2_flops(image_size: int, classes: int, chosen: Mapping[str, Any]) -> int:
    """A version 2 model of the hyperparameter values ``chosen`` (by name)."""
    flops, channels, side = 0, 3, image_size
    for block in range(chosen["conv_blocks"]):
        filters = block_filters(chosen["base_filters"], chosen["filter_growth"], block)
        flops += conv_flops(side, channels, filters, 3)
        channels = filters
        if chosen["one_by_one_conv"]:
            half = max(filters // 2, 1)
            flops += conv_flops(side, channels, half, 1)
            channels = half
        if chosen["downsampling"] == "max_pool":
            side //= 2
        else:  # a strided conv with "same" padding rounds up
            side = math.ceil(side / 2)
            flops += conv_flops(side, channels, filters, 3)
            channels = filters
    return flops + head_flops(side, channels, chosen["head"], chosen["dense_units"], classes)
