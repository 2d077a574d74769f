"""Search spaces: each turns a space spec from a request into a KerasTuner HyperModel.

Importing this package does not import Keras, so the API can use ``nas.core.spaces.limits`` and
``nas.core.spaces.registry``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nas.core.spaces.limits import min_image_size

if TYPE_CHECKING:
    from nas.core.specs import SpaceSpec
    from nas.hypermodels.capped import CappedHyperModel

__all__ = ["build_hypermodel", "min_image_size"]


def build_hypermodel(
    space: SpaceSpec,
    image_size: int,
    num_classes: int,
    *,
    steps_per_epoch: int,
    epochs: int,
    max_params: int | None = None,
    max_flops: int | None = None,
) -> CappedHyperModel:
    """The HyperModel of ``space`` for square RGB images of ``image_size`` and ``num_classes``,
    trained ``epochs`` of ``steps_per_epoch`` steps (learning-rate schedules span them); it
    refuses a model of more than ``max_params`` parameters or ``max_flops`` forward FLOPs per
    image before building it.

    Raises:
        ValueError: the space is unknown, or cannot take images this small.
    """
    # Imported here so that importing the package stays free of Keras.
    if space.name == "codelab_convnet" and space.version == 1:
        from nas.hypermodels.convnet import ConvNetHyperModel

        return ConvNetHyperModel(
            space, image_size, num_classes, max_params=max_params, max_flops=max_flops
        )
    if space.name == "codelab_convnet" and space.version == 2:
        from nas.hypermodels.codelab_v2 import CodelabV2HyperModel

        return CodelabV2HyperModel(
            space,
            image_size,
            num_classes,
            steps_per_epoch=steps_per_epoch,
            epochs=epochs,
            max_params=max_params,
            max_flops=max_flops,
        )
    raise ValueError(f"unknown search space {space.name!r} version {space.version}")
