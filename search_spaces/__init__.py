"""Search spaces: each turns a space spec from a request into a KerasTuner HyperModel.

Importing this package does not import Keras, so the API can use ``search_spaces.limits``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from search_spaces.limits import min_image_size

if TYPE_CHECKING:
    import keras_tuner

    from service.specs import ConvNetSpace

__all__ = ["build_hypermodel", "min_image_size"]


def build_hypermodel(
    space: ConvNetSpace, image_size: int, num_classes: int
) -> keras_tuner.HyperModel:
    """The HyperModel of ``space`` for square RGB images of ``image_size`` and ``num_classes``.

    Raises:
        ValueError: the space is unknown, or cannot take images this small.
    """
    if space.name == "codelab_convnet":
        # Imported here so that importing the package stays free of Keras.
        from search_spaces.convnet import ConvNetHyperModel

        return ConvNetHyperModel(space, image_size, num_classes)
    raise ValueError(f"unknown search space {space.name!r}")
