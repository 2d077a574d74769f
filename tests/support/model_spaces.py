"""Small spaces of both versions, each with an image size, whose models tests build and
count: odd sizes, every head, 1x1 and strided convs, the filter cap."""

from __future__ import annotations

from typing import Any

from nas.core.specs import CodelabV2Space, ConvNetSpace, HyperparameterRange, SpaceSpec

CLASSES = 5
TRAINING = {"steps_per_epoch": 1, "epochs": 1}


def v2(**ranges: Any) -> CodelabV2Space:
    """Version 2 with each of ``ranges`` pinned: ``name=value``."""
    return CodelabV2Space(
        hyperparameters={name: HyperparameterRange(fixed=value) for name, value in ranges.items()}
    )


# 40 px: after three halvings max pooling leaves 5 px, a strided conv 5 and then 3 vs 2 px.
SPACES: dict[str, tuple[SpaceSpec, int]] = {
    "v1 defaults": (ConvNetSpace(), 64),
    "v1 flatten, 1x1 convs, odd size": (
        ConvNetSpace(
            min_conv_blocks=3,
            max_conv_blocks=3,
            filters=[24],
            one_by_one_conv=[True],
            heads=["flatten_dense"],
            dense_units=[40],
        ),
        40,
    ),
    "v1 gap_dense, one block of one filter": (
        ConvNetSpace(
            min_conv_blocks=1, max_conv_blocks=1, filters=[1], heads=["gap_dense"], dense_units=[7]
        ),
        16,
    ),
    "v2 defaults": (CodelabV2Space(), 64),
    "v2 strided, 1x1 convs, no batch norm, flatten": (
        v2(
            conv_blocks=4,
            base_filters=24,
            filter_growth=1.5,
            batch_norm=False,
            one_by_one_conv=True,
            downsampling="strided_conv",
            head="flatten_dense",
            dense_units=64,
        ),
        40,
    ),
    "v2 strided with batch norm, gap_dense": (
        v2(conv_blocks=3, downsampling="strided_conv", head="gap_dense", dense_units=256),
        40,
    ),
    "v2 max pooling, flatten, odd size": (
        v2(conv_blocks=3, base_filters=48, head="flatten_dense", augmentation=False),
        40,
    ),
    "v2 six blocks capped at 512 filters": (
        v2(conv_blocks=6, base_filters=64, filter_growth=2.0, one_by_one_conv=True),
        64,
    ),
}
