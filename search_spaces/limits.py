"""Facts about search spaces that the API checks at submit time, without importing Keras."""

from __future__ import annotations

from service.specs import ConvNetSpace


def min_image_size(space: ConvNetSpace) -> int:
    """The smallest image side the space can take: every conv block halves it by max pooling."""
    return 2**space.max_conv_blocks
