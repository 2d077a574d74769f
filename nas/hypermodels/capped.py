"""A HyperModel that counts its model's parameters and FLOPs from the hyperparameters it
draws, and builds the model only under the caps (``NAS_LIMIT_MAX_PARAMS``,
``NAS_LIMIT_MAX_FLOPS``, or the lower ones scaled to the search's data)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras
import keras_tuner


class ModelTooLarge(keras_tuner.errors.FailedTrialError):
    """The drawn model has more parameters than the cap: its trial fails without training."""

    def __init__(self, params: int, max_params: int) -> None:
        super().__init__(
            f"the model has {params:,} parameters, over the cap of {max_params:,} "
            "(NAS_LIMIT_MAX_PARAMS, or dataset.model_bounds)"
        )
        self.params = params


class ModelTooCostly(keras_tuner.errors.FailedTrialError):
    """The drawn model takes more FLOPs per image than the cap: its trial fails untrained."""

    def __init__(self, flops: int, max_flops: int) -> None:
        super().__init__(
            f"the model takes {flops:,} FLOPs per image, over the cap of {max_flops:,} "
            "(NAS_LIMIT_MAX_FLOPS, or dataset.model_bounds)"
        )
        self.flops = flops


class CappedHyperModel(keras_tuner.HyperModel):
    """``build`` declares the hyperparameters, counts the parameters and FLOPs of the model
    they pick and raises before building a layer if they are over ``max_params`` or
    ``max_flops``."""

    def __init__(self, name: str, max_params: int | None, max_flops: int | None = None) -> None:
        super().__init__(name=name)
        self.max_params = max_params
        self.max_flops = max_flops
        self._declaring_only = False

    def declare(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        """Declare the hyperparameters on ``hp``; the values of this model, by name."""
        raise NotImplementedError

    def count_params(self, chosen: dict[str, Any]) -> int:
        """The parameters (Keras's ``count_params``) of the model of ``chosen``."""
        raise NotImplementedError

    def count_flops(self, chosen: dict[str, Any]) -> int:
        """The forward FLOPs per image of the model of ``chosen`` (an estimate)."""
        raise NotImplementedError

    def build_model(self, hp: keras_tuner.HyperParameters, chosen: dict[str, Any]) -> keras.Model:
        """Build and compile the model of ``chosen``."""
        raise NotImplementedError

    @contextlib.contextmanager
    def declaring_only(self) -> Iterator[None]:
        """Within it ``build`` declares the hyperparameters and returns None: KerasTuner
        explores the conditional scopes by building, and some of the models it would build
        for that may be over the cap."""
        self._declaring_only = True
        try:
            yield
        finally:
            self._declaring_only = False

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model | None:
        """The compiled model of the values ``hp`` holds (declaring any it lacks).

        Raises:
            ModelTooLarge: the model would have more than ``max_params`` parameters.
            ModelTooCostly: the model would take more than ``max_flops`` FLOPs per image.
        """
        chosen = self.declare(hp)
        if self._declaring_only:
            return None
        params = self.count_params(chosen)
        if self.max_params is not None and params > self.max_params:
            raise ModelTooLarge(params, self.max_params)
        if self.max_flops is not None:
            flops = self.count_flops(chosen)
            if flops > self.max_flops:
                raise ModelTooCostly(flops, self.max_flops)
        return self.build_model(hp, chosen)
