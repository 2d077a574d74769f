"""The convnet family of Google's "Keras on TPU" flowers codelab, as a KerasTuner HyperModel."""

from __future__ import annotations

import contextlib
from typing import Any

import keras
import keras_tuner
from keras import layers

from nas.core.spaces.flop_counts import convnet_v1_flops
from nas.core.spaces.limits import check_buildable
from nas.core.spaces.parameter_counts import convnet_v1_params
from nas.core.specs import ConvNetSpace
from nas.hypermodels.capped import CappedHyperModel

DENSE_HEADS = ("flatten_dense", "gap_dense")


class ConvNetHyperModel(CappedHyperModel):
    """Conv blocks (3x3 conv, optional 1x1 conv, 2x2 max pooling), then a classification head.

    The model takes raw RGB values in [0, 255] as an ``image`` input of shape
    ``(image_size, image_size, 3)`` and outputs float32 class probabilities.
    """

    def __init__(
        self,
        space: ConvNetSpace,
        image_size: int,
        num_classes: int,
        *,
        max_params: int | None = None,
        max_flops: int | None = None,
    ) -> None:
        """Raises ValueError if the space cannot shrink ``image_size`` or there are < 2 classes."""
        check_buildable(space, image_size, num_classes)
        super().__init__(space.name, max_params, max_flops)
        self.space = space
        self.image_size = image_size
        self.num_classes = num_classes

    def declare(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        """The depth, the (filters, one_by_one) of each block of that depth, the head, its
        dense units (None without a dense layer) and the learning rate."""
        space = self.space
        depth = hp.Int("conv_blocks", space.min_conv_blocks, space.max_conv_blocks)
        blocks = [self._declare_block(hp, index) for index in range(space.max_conv_blocks)]
        head = hp.Choice("head", space.heads)
        units = None
        dense_heads = [name for name in space.heads if name in DENSE_HEADS]
        if dense_heads:
            with hp.conditional_scope("head", dense_heads):
                units = hp.Choice("dense_units", space.dense_units)
        learning_rate = hp.Choice("learning_rate", space.learning_rates)
        return {
            "blocks": blocks[:depth],
            "head": head,
            "dense_units": units,
            "learning_rate": learning_rate,
        }

    def count_params(self, chosen: dict[str, Any]) -> int:
        """The parameters of the model of ``chosen``."""
        return convnet_v1_params(
            self.image_size,
            self.num_classes,
            chosen["blocks"],
            chosen["head"],
            chosen["dense_units"],
        )

    def count_flops(self, chosen: dict[str, Any]) -> int:
        """The forward FLOPs per image of the model of ``chosen``."""
        return convnet_v1_flops(
            self.image_size,
            self.num_classes,
            chosen["blocks"],
            chosen["head"],
            chosen["dense_units"],
        )

    def build_model(self, hp: keras_tuner.HyperParameters, chosen: dict[str, Any]) -> keras.Model:
        """Build and compile the model of ``chosen``."""
        head, units = chosen["head"], chosen["dense_units"]
        inputs = keras.Input(shape=(self.image_size, self.image_size, 3), name="image")
        x = layers.Rescaling(1 / 255)(inputs)
        for filters, one_by_one in chosen["blocks"]:
            x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
            if one_by_one:
                x = layers.Conv2D(max(filters // 2, 1), 1, activation="relu")(x)
            x = layers.MaxPooling2D(2)(x)
        x = layers.Flatten()(x) if head == "flatten_dense" else layers.GlobalAveragePooling2D()(x)
        if head in DENSE_HEADS:
            x = layers.Dense(units, activation="relu")(x)
        # float32 so that mixed precision policies still output float32 probabilities.
        outputs = layers.Dense(
            self.num_classes, activation="softmax", dtype="float32", name="probabilities"
        )(x)
        model = keras.Model(inputs, outputs, name="convnet")
        model.compile(
            optimizer=keras.optimizers.Adam(chosen["learning_rate"]),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model

    def _declare_block(
        self, hp: keras_tuner.HyperParameters, index: int
    ) -> tuple[int | None, bool | None]:
        """Block ``index``'s (filters, one_by_one); both None when the block is inactive."""
        space = self.space
        scope = (
            contextlib.nullcontext()
            if index < space.min_conv_blocks
            else hp.conditional_scope(
                "conv_blocks", list(range(index + 1, space.max_conv_blocks + 1))
            )
        )
        with scope:
            filters = hp.Choice(f"filters_{index}", space.filters)
            # hp.Choice would store booleans as 0 and 1; Boolean and Fixed keep them bools.
            name = f"one_by_one_{index}"
            if len(space.one_by_one_conv) == 1:
                one_by_one = hp.Fixed(name, space.one_by_one_conv[0])
            else:
                one_by_one = hp.Boolean(name)
        return filters, one_by_one
