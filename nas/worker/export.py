"""Exports the best models of a search: SavedModel (tarball), .keras, summary, class names."""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import shutil
import tarfile
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import numpy as np

from nas.core.artifacts import ModelArtifacts, SearchArtifacts
from nas.core.store import ExportedModel
from nas.core.store.ranking import objective_is_maximized
from nas.hypermodels.codelab_v2 import AUGMENTATION_LAYER
from nas.worker.datasets import ImageSet
from nas.worker.incumbent import Contender, choose
from nas.worker.oracles import EPOCHS, RESUMED_FROM

log = logging.getLogger(__name__)


def savedmodel_available() -> bool:
    """SavedModel export needs TensorFlow, even when training ran on JAX."""
    return importlib.util.find_spec("tensorflow") is not None


def best_completed_trials(
    oracle: keras_tuner.Oracle, top_k: int
) -> list[keras_tuner.engine.trial.Trial]:
    """The ``top_k`` best trials that completed, best first."""
    # KerasTuner pads its best trials with unfinished ones when fewer than top_k completed
    # (a search cancelled in its first trial): those have no checkpoint to export.
    return [
        trial
        for trial in oracle.get_best_trials(top_k)
        if trial.status == keras_tuner.engine.trial.TrialStatus.COMPLETED
    ]


def chosen_trials(
    oracle: keras_tuner.Oracle,
    top_k: int,
    *,
    objective: str,
    validation_images: int,
    margin: float,
) -> list[keras_tuner.engine.trial.Trial]:
    """The ``top_k`` completed trials a search trains to the end and exports, first first:
    the best by score, the space's defaults first unless beaten by ``margin`` standard errors
    (see :mod:`nas.worker.incumbent`; for an accuracy ``objective`` only)."""
    if not objective_is_maximized(objective):
        return best_completed_trials(oracle, top_k)
    ranked = best_completed_trials(oracle, len(oracle.trials))
    by_id = {trial.trial_id: trial for trial in ranked}
    contenders = [
        Contender(trial.trial_id, trial.score, _fidelity(trial), _origin(oracle.trials, trial))
        for trial in ranked
        if trial.score is not None
    ]
    # The space's defaults: the oracle's first trial (see ``nas.worker.oracles``).
    first = oracle.start_order[0] if oracle.start_order else ""
    order = choose(
        contenders,
        first_trial_id=first,
        validation_images=validation_images,
        top_k=top_k,
        margin=margin,
    )
    return [by_id[trial_id] for trial_id in order]


def _fidelity(trial: keras_tuner.engine.trial.Trial) -> float:
    """The epochs a multi-fidelity trial was judged at; the same for every other trial."""
    return float(trial.hyperparameters.values.get(EPOCHS, math.inf))


def _origin(
    trials: Mapping[str, keras_tuner.engine.trial.Trial], trial: keras_tuner.engine.trial.Trial
) -> str:
    """The trial the promotions that led to ``trial`` started from."""
    seen = {trial.trial_id}
    while (parent := trial.hyperparameters.values.get(RESUMED_FROM)) in trials:
        if parent in seen:  # a cycle only a corrupt state file could make
            break
        seen.add(parent)
        trial = trials[parent]
    return trial.trial_id


def export_best_models(
    tuner: keras_tuner.Tuner,
    trials: Sequence[keras_tuner.engine.trial.Trial],
    *,
    artifacts: SearchArtifacts,
    class_names: Sequence[str],
    image_size: int,
    test: ImageSet | None = None,
    batch_size: int = 32,
    trained_to_the_end: Mapping[str, keras.Model] | None = None,
) -> list[ExportedModel]:
    """Write the models of ``trials`` (completed, first first) and describe them; with ``test``
    photos, each model's accuracy on them is measured too. A trial with a model in
    ``trained_to_the_end`` (by trial id) has that model exported instead of its checkpoint."""
    exported = []
    retrained = trained_to_the_end or {}
    for rank, trial in enumerate(trials, start=1):
        model = retrained.get(trial.trial_id)
        if model is None:
            model = _checkpoint_model(tuner, trial)
        files = artifacts.model(rank)
        if files.directory.exists():
            shutil.rmtree(files.directory)
        files.directory.mkdir(parents=True)
        formats = export_model(model, files, class_names, image_size)
        exported.append(
            ExportedModel(
                search_id=artifacts.search_id,
                rank=rank,
                trial_id=trial.trial_id,
                score=trial.score,
                params=model.count_params(),
                formats=tuple(formats),
                created_at=datetime.now(UTC),
                test_accuracy=None if test is None else test_accuracy(model, test, batch_size),
            )
        )
        log.info("exported trial %s as rank %d (%s)", trial.trial_id, rank, ", ".join(formats))
    return exported


def _checkpoint_model(
    tuner: keras_tuner.Tuner, trial: keras_tuner.engine.trial.Trial
) -> keras.Model:
    with warnings.catch_warnings():
        # Checkpoints hold the weights only; the fresh optimizer is built just below.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model = tuner.load_model(trial)
    if model.optimizer is not None and not model.optimizer.built:
        # Built, so the .keras file loads without an optimizer-mismatch warning.
        model.optimizer.build(model.trainable_variables)
    return model


def serving_model(model: keras.Model) -> keras.Model:
    """The trained model without its training-only augmentation, sharing its weights.

    Keras's random preprocessing layers transform their input whenever they are called without
    ``training=False``: a user calling a downloaded model as ``model(images)`` would otherwise
    get the predictions of randomly flipped, rotated and zoomed images.
    """
    if AUGMENTATION_LAYER not in {layer.name for layer in model.layers}:
        return model

    def without_augmentation(layer: keras.layers.Layer) -> keras.layers.Layer:
        if layer.name == AUGMENTATION_LAYER:
            # A Sequential, as the augmentation is: its call takes the same arguments.
            return keras.Sequential([keras.layers.Identity()], name="no_augmentation")
        return layer  # the trained layer itself, weights and all

    served = keras.models.clone_model(model, clone_function=without_augmentation)
    # The same variables as the model's, so its optimizer (already built) fits them as it is.
    served.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"])
    return served


def test_accuracy(model: keras.Model, test: ImageSet, batch_size: int) -> float:
    """The share of the test photos whose most probable class is their own."""
    probabilities = model.predict(test.images, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=-1) == test.labels))


def export_model(
    model: keras.Model, files: ModelArtifacts, class_names: Sequence[str], image_size: int
) -> list[str]:
    """Write one model's files, without training-only layers; returns the formats written."""
    model = serving_model(model)
    files.class_names_file.write_text(json.dumps(list(class_names)), encoding="utf-8")
    files.summary_file.write_text(summary_text(model), encoding="utf-8")
    model.save(files.keras_file)
    formats = ["keras"]
    if savedmodel_available():
        write_savedmodel(model, files.savedmodel_dir, class_names, image_size)
        _tar_directory(files.savedmodel_dir, files.savedmodel_tarball)
        formats.insert(0, "savedmodel")
    else:
        log.warning("TensorFlow is not installed: SavedModel export is unavailable")
    return formats


def summary_text(model: keras.Model) -> str:
    """``model.summary()`` as plain text."""
    lines: list[str] = []

    def collect(text: str, *_args: Any, **_kwargs: Any) -> None:
        lines.append(text)

    model.summary(print_fn=collect)
    return "\n".join(lines).rstrip() + "\n"


def write_savedmodel(
    model: keras.Model, directory: Path, class_names: Sequence[str], image_size: int
) -> None:
    """A SavedModel with two signatures taking RGB images in 0-255:
    ``serve`` (the default) returns probabilities; ``classify`` adds the class index and
    name. The class names are also in ``assets.extra/class_names.json``."""
    import tensorflow as tf

    names = list(class_names)
    image = tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name="image")
    archive = keras.export.ExportArchive()
    # The model's endpoint is traced by the backend (through jax2tf on JAX); the class names
    # are TensorFlow strings, so ``classify`` is a TensorFlow function around it.
    archive.track(model)
    # Explicitly not training: called plainly, Keras's augmentation layers (RandomFlip...) would
    # transform the images they are served.
    serve = archive.add_endpoint(
        "serve", lambda images: model(images, training=False), input_signature=[image]
    )

    @tf.function(input_signature=[image])
    def classify(images: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = serve(images)
        index = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {
            "probabilities": probabilities,
            "class_index": index,
            "class_name": tf.gather(tf.constant(names), index),
        }

    classify.get_concrete_function()
    archive.add_endpoint("classify", classify)
    archive.write_out(str(directory), verbose=False)
    extra = directory / "assets.extra"
    extra.mkdir(exist_ok=True)
    (extra / "class_names.json").write_text(json.dumps(names), encoding="utf-8")


def _tar_directory(directory: Path, tarball: Path) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=tarball.parent, suffix=".tmp")
    os.close(descriptor)
    os.chmod(temporary, 0o644)
    with tarfile.open(temporary, "w:gz") as archive:
        archive.add(directory, arcname=directory.name)
    os.replace(temporary, tarball)
