"""A few real trials of a space, to see what a tuner draws from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras_tuner

from nas.core.specs import SpaceSpec
from nas.hypermodels import build_hypermodel
from nas.worker.datasets import ImageSet


def sampled_hyperparameters(
    space: SpaceSpec, photos: ImageSet, trials: int, directory: Path
) -> list[dict[str, Any]]:
    """The values of ``trials`` one-epoch random-search trials of ``space`` on ``photos``."""
    size, classes = photos.images.shape[1], len(photos.class_names)
    tuner = keras_tuner.RandomSearch(
        build_hypermodel(space, size, classes, steps_per_epoch=1, epochs=1),
        objective="loss",
        max_trials=trials,
        seed=0,
        directory=directory,
        project_name="sampled",
    )
    tuner.search(photos.images.astype("float32"), photos.labels, epochs=1, verbose=0)
    return [trial.hyperparameters.values for trial in tuner.oracle.trials.values()]
