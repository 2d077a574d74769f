"""Facts about search spaces that the API checks at submit time, without importing Keras."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nas.core.specs import SpaceSpec


def min_image_size(space: SpaceSpec) -> int:
    """The smallest image side the space can take: every conv block halves it."""
    return 2**space.deepest_conv_blocks


def deepest_fitting_blocks(image_size: int) -> int:
    """The most conv blocks that images of ``image_size`` px can go through."""
    return image_size.bit_length() - 1


def fitted_to_image(space: SpaceSpec, image_size: int) -> SpaceSpec:
    """``space`` with a depth range the request left at its default capped to fit the image."""
    return space.with_depth_at_most(deepest_fitting_blocks(image_size))


def check_buildable(space: SpaceSpec, image_size: int, num_classes: int) -> None:
    """Raise ValueError if the space cannot shrink ``image_size`` or there are < 2 classes."""
    if image_size < min_image_size(space):
        raise ValueError(
            f"images of {image_size} px are too small for {space.deepest_conv_blocks} conv "
            f"blocks: need at least {min_image_size(space)} px"
        )
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {num_classes}")
