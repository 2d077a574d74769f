"""Facts about search spaces that the API checks at submit time, without importing Keras."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.specs import SpaceSpec


def min_image_size(space: SpaceSpec) -> int:
    """The smallest image side the space can take: every conv block halves it."""
    return 2**space.deepest_conv_blocks
