"""Parameter counts of the spaces' models from their hyperparameters alone, without Keras.

A model is measured before any of its layers exists, so one over the cap allocates nothing
however large it is; the API also finds the smallest model of a space at submit. Counts are
Keras's ``count_params``: every weight, batch normalization's moving statistics included.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nas.core.spaces.codelab_v2 import DENSE_HEADS, block_filters

if TYPE_CHECKING:
    from nas.core.spaces.hyperparameters import Hyperparameter, Value
    from nas.core.specs import CodelabV2Space, ConvNetSpace, SpaceSpec

# Gamma, beta, moving mean and moving variance per channel.
BATCH_NORM_WEIGHTS = 4
# Version 2's hyperparameters that only add parameters as they grow (batch normalization
# replaces a conv's bias with four weights per channel), and those that trade conv weights
# for the head's: more blocks, 1x1 convs and strided convs shrink what a flatten head sees.
V2_GROWING = ("base_filters", "filter_growth", "batch_norm", "dense_units")
V2_TRADING = ("conv_blocks", "one_by_one_conv", "downsampling", "head")


def conv_params(channels: int, filters: int, size: int, *, batch_norm: bool = False) -> int:
    """A ``size`` x ``size`` conv of ``channels`` to ``filters``: with batch normalization
    after it instead of a bias when ``batch_norm``."""
    extra = BATCH_NORM_WEIGHTS * filters if batch_norm else filters
    return size * size * channels * filters + extra


def head_params(side: int, channels: int, head: str, dense_units: int | None, classes: int) -> int:
    """The head on ``side`` x ``side`` x ``channels`` features: flatten or global average
    pooling, the dense layer of a dense head, and the softmax layer."""
    features = side * side * channels if head == "flatten_dense" else channels
    params = 0
    if head in DENSE_HEADS:
        if dense_units is None:
            raise ValueError(f"a {head} head needs dense_units")
        params, features = features * dense_units + dense_units, dense_units
    return params + features * classes + classes


def v1_block(channels: int, filters: int, one_by_one: bool) -> tuple[int, int]:
    """A version 1 block on ``channels``: its parameters and the channels it outputs."""
    params = conv_params(channels, filters, 3)
    if not one_by_one:
        return params, filters
    half = max(filters // 2, 1)
    return params + conv_params(filters, half, 1), half


def convnet_v1_params(
    image_size: int,
    classes: int,
    blocks: Sequence[tuple[int, bool]],
    head: str,
    dense_units: int | None,
) -> int:
    """A version 1 model of ``blocks`` (filters, whether a 1x1 conv follows) and ``head``."""
    params, channels = 0, 3
    for filters, one_by_one in blocks:
        added, channels = v1_block(channels, filters, one_by_one)
        params += added
    side = image_size >> len(blocks)  # 2x2 max pooling floors
    return params + head_params(side, channels, head, dense_units, classes)


def codelab_v2_params(image_size: int, classes: int, chosen: Mapping[str, Any]) -> int:
    """A version 2 model of the hyperparameter values ``chosen`` (by name)."""
    batch_norm = chosen["batch_norm"]
    params, channels, side = 0, 3, image_size
    for block in range(chosen["conv_blocks"]):
        filters = block_filters(chosen["base_filters"], chosen["filter_growth"], block)
        params += conv_params(channels, filters, 3, batch_norm=batch_norm)
        channels = filters
        if chosen["one_by_one_conv"]:
            half = max(filters // 2, 1)
            params += conv_params(channels, half, 1, batch_norm=batch_norm)
            channels = half
        if chosen["downsampling"] == "max_pool":
            side //= 2
        else:  # a strided conv with "same" padding rounds up
            params += conv_params(channels, filters, 3, batch_norm=batch_norm)
            channels, side = filters, math.ceil(side / 2)
    return params + head_params(side, channels, chosen["head"], chosen["dense_units"], classes)


def smallest_params(space: SpaceSpec, image_size: int, classes: int) -> int:
    """The fewest parameters of a model of ``space`` for ``classes`` classes."""
    if space.version == 1:
        return smallest_v1_params(space, image_size, classes)
    return smallest_v2_params(space, image_size, classes)


def smallest_v1_params(space: ConvNetSpace, image_size: int, classes: int) -> int:
    """The fewest parameters of a model of ``space``.

    Blocks choose their filters independently, so the models are too many to list; the
    fewest parameters that leave each number of channels after each block are enough.
    """
    fewest = math.inf
    reaching = {3: 0}  # channels after the blocks so far -> fewest parameters for them
    for depth in range(1, space.max_conv_blocks + 1):
        after: dict[int, int] = {}
        for channels, params in reaching.items():
            for filters, one_by_one in itertools.product(space.filters, space.one_by_one_conv):
                added, out = v1_block(channels, filters, one_by_one)
                after[out] = min(after.get(out, math.inf), params + added)
        reaching = after
        if depth >= space.min_conv_blocks:
            side = image_size >> depth
            for (channels, params), head in itertools.product(reaching.items(), space.heads):
                # More dense units only add parameters.
                head_size = head_params(side, channels, head, min(space.dense_units), classes)
                fewest = min(fewest, params + head_size)
    return int(fewest)


def smallest_v2_params(space: CodelabV2Space, image_size: int, classes: int) -> int:
    """The fewest parameters of a model of ``space``: the least of each growing
    hyperparameter, with every combination of the trading ones."""
    ranges = {item.name: item for item in space.resolved_hyperparameters()}
    least = {name: min(_values(ranges[name])) for name in V2_GROWING}
    return min(
        codelab_v2_params(image_size, classes, least | dict(zip(V2_TRADING, values, strict=True)))
        for values in itertools.product(*(_values(ranges[name]) for name in V2_TRADING))
    )


def _values(item: Hyperparameter) -> Iterable[Value]:
    """Every value a hyperparameter of kind fixed, choice, boolean or int may take."""
    if item.kind == "boolean":
        return (False, True)
    if item.kind == "int":
        return range(int(item.min), int(item.max) + 1, int(item.step or 1))
    return item.choices
