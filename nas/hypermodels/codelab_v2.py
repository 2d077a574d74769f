"""Version 2 of the codelab convnet family: what makes small convnets work on small data.

Blocks of 3x3 convs (with batch normalization and the codelab's 1x1 alternation as choices)
that halve the image by max pooling or a strided conv, with filters growing per block; a
head of global average pooling or flatten, with an optional dense layer, after dropout; data
augmentation layers that act only while training; Adam with a constant or cosine-decayed
rate; label smoothing.
"""

from __future__ import annotations

from typing import Any

import keras
import keras_tuner
import numpy as np
from keras import layers

from nas.core.spaces.codelab_v2 import DENSE_HEADS, block_filters
from nas.core.spaces.flop_counts import codelab_v2_flops
from nas.core.spaces.limits import check_buildable
from nas.core.spaces.parameter_counts import codelab_v2_params
from nas.core.specs import CodelabV2Space
from nas.hypermodels.capped import CappedHyperModel

# The name of the layer that augments images in training; exports leave it out.
AUGMENTATION_LAYER = "augmentation"


class CodelabV2HyperModel(CappedHyperModel):
    """The space's models take raw RGB values in [0, 255] as an ``image`` input of shape
    ``(image_size, image_size, 3)`` and output float32 class probabilities.

    ``steps_per_epoch`` and ``epochs`` size the cosine decay of the learning rate; under
    Hyperband, a trial's own epoch budget replaces ``epochs``. Keras 3's sparse
    cross-entropy has no label smoothing, so models train on one-hot labels (``fit`` encodes
    the integer labels it is given) with the built-in categorical cross-entropy: exported
    ``.keras`` files load without this package.
    """

    def __init__(
        self,
        space: CodelabV2Space,
        image_size: int,
        num_classes: int,
        *,
        steps_per_epoch: int,
        epochs: int,
        max_params: int | None = None,
        max_flops: int | None = None,
    ) -> None:
        """Raises ValueError if the space cannot shrink ``image_size`` or there are < 2 classes."""
        check_buildable(space, image_size, num_classes)
        super().__init__(f"{space.name}_v{space.version}", max_params, max_flops)
        self.hyperparameters = space.resolved_hyperparameters()
        self.image_size = image_size
        self.num_classes = num_classes
        self.steps_per_epoch = max(steps_per_epoch, 1)
        self.epochs = epochs

    def declare(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        """Every hyperparameter of the space (in its order), pinned or narrowed as the request
        asked; those in an inactive conditional scope (dense_units of a `gap` head) are None."""
        return {item.name: item.declare(hp) for item in self.hyperparameters}

    def count_params(self, chosen: dict[str, Any]) -> int:
        """The parameters of the model of ``chosen``."""
        return codelab_v2_params(self.image_size, self.num_classes, chosen)

    def count_flops(self, chosen: dict[str, Any]) -> int:
        """The forward FLOPs per image of the model of ``chosen``."""
        return codelab_v2_flops(self.image_size, self.num_classes, chosen)

    def build_model(self, hp: keras_tuner.HyperParameters, chosen: dict[str, Any]) -> keras.Model:
        """Build and compile the model of ``chosen``; under Hyperband, ``hp`` gives the
        trial's epochs."""
        inputs = keras.Input(shape=(self.image_size, self.image_size, 3), name="image")
        x = inputs
        if chosen["augmentation"]:
            x = self._augmentation(chosen["rotation"], chosen["zoom"], chosen["contrast"])(x)
        x = layers.Rescaling(1 / 255)(x)
        for block in range(chosen["conv_blocks"]):
            filters = block_filters(chosen["base_filters"], chosen["filter_growth"], block)
            x = _conv(x, filters, 3, 1, chosen["batch_norm"])
            if chosen["one_by_one_conv"]:
                x = _conv(x, max(filters // 2, 1), 1, 1, chosen["batch_norm"])
            if chosen["downsampling"] == "max_pool":
                x = layers.MaxPooling2D(2)(x)
            else:
                x = _conv(x, filters, 3, 2, chosen["batch_norm"])
        head = chosen["head"]
        x = layers.Flatten()(x) if head == "flatten_dense" else layers.GlobalAveragePooling2D()(x)
        if chosen["dropout"]:
            x = layers.Dropout(chosen["dropout"])(x)
        if head in DENSE_HEADS:
            x = layers.Dense(chosen["dense_units"], activation="relu")(x)
        # float32 so that mixed precision policies still output float32 probabilities.
        outputs = layers.Dense(
            self.num_classes, activation="softmax", dtype="float32", name="probabilities"
        )(x)
        model = keras.Model(inputs, outputs, name="convnet_v2")

        rate = chosen["learning_rate"]
        if chosen["lr_schedule"] == "cosine":
            epochs = hp.values.get("tuner/epochs", self.epochs)
            rate = keras.optimizers.schedules.CosineDecay(rate, epochs * self.steps_per_epoch)
        model.compile(
            optimizer=keras.optimizers.Adam(rate),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=chosen["label_smoothing"]),
            metrics=["accuracy"],
        )
        return model

    def fit(
        self, hp: keras_tuner.HyperParameters, model: keras.Model, *args: Any, **kwargs: Any
    ) -> keras.callbacks.History:
        """``model.fit`` with the integer labels (``y``, ``validation_data``) made one-hot."""
        if len(args) >= 2:
            args = (args[0], self._one_hot(args[1]), *args[2:])
        if "y" in kwargs:
            kwargs["y"] = self._one_hot(kwargs["y"])
        if "validation_data" in kwargs:
            images, labels = kwargs["validation_data"]
            kwargs["validation_data"] = (images, self._one_hot(labels))
        return model.fit(*args, **kwargs)

    def _one_hot(self, labels: np.ndarray) -> np.ndarray:
        return np.eye(self.num_classes, dtype="float32")[np.asarray(labels)]

    @staticmethod
    def _augmentation(rotation: float, zoom: float, contrast: float) -> keras.Sequential:
        """Random changes of the raw images, active only in training (Keras's own layers)."""
        steps = [layers.RandomFlip("horizontal")]
        if rotation:
            steps.append(layers.RandomRotation(rotation, fill_mode="reflect"))
        if zoom:
            steps.append(layers.RandomZoom(zoom, fill_mode="reflect"))
        if contrast:
            steps.append(layers.RandomContrast(contrast, value_range=(0, 255)))
        return keras.Sequential(steps, name=AUGMENTATION_LAYER)


def _conv(x: keras.KerasTensor, filters: int, size: int, strides: int, batch_norm: bool) -> object:
    """A conv with ReLU; with batch normalization between them (and no conv bias) if asked."""
    x = layers.Conv2D(filters, size, strides=strides, padding="same", use_bias=not batch_norm)(x)
    if batch_norm:
        # Momentum 0.9, not Keras's 0.99: a trial of a few hundred steps would otherwise be
        # validated with moving statistics still near their initial values.
        x = layers.BatchNormalization(momentum=0.9)(x)
    return layers.Activation("relu")(x)
