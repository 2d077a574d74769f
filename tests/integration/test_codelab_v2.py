"""Version 2 of the codelab space, and a smoke test of every space: real photos, real training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import keras_tuner
import numpy as np
import pytest

from nas.cli.console import describe_architecture
from nas.core.artifacts import ModelArtifacts
from nas.core.spaces.codelab_v2 import HYPERPARAMETERS, SMALL_DATA_FOCUS
from nas.core.specs import CodelabV2Space, ConvNetSpace, HyperparameterRange, SpaceSpec
from nas.hypermodels import build_hypermodel
from nas.worker.datasets import ImageSet
from nas.worker.export import export_model
from tests.support.factories import decoded_flowers
from tests.support.sampling import sampled_hyperparameters

SIZE = 64
CLASSES = 5
TRAINING = {"steps_per_epoch": 1, "epochs": 1}
SPACES: dict[str, SpaceSpec] = {"v1": ConvNetSpace(), "v2": CodelabV2Space()}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> ImageSet:
    """Two real photos of each of the five flower classes, decoded at ``SIZE``."""
    return decoded_flowers(tmp_path_factory, SIZE)


def v2(**ranges: dict) -> CodelabV2Space:
    return CodelabV2Space(
        hyperparameters={name: HyperparameterRange(**asked) for name, asked in ranges.items()}
    )


def build(space: SpaceSpec) -> tuple[keras.Model, keras_tuner.HyperParameters]:
    hp = keras_tuner.HyperParameters()
    return build_hypermodel(space, SIZE, CLASSES, **TRAINING).build(hp), hp


def decay_steps(model: keras.Model) -> int:
    """The steps of the model's cosine decay (an error if its rate is constant)."""
    schedule = model.optimizer.get_config()["learning_rate"]
    assert schedule["class_name"] == "CosineDecay"
    return schedule["config"]["decay_steps"]


def layer_types(model: keras.Model) -> list[str]:
    return [type(layer).__name__ for layer in model.layers]


@pytest.mark.parametrize("version", SPACES)
def test_each_space_trains_on_real_photos_and_predicts_raw_images_the_same_twice(
    photos: ImageSet, tmp_path: Path, version: str
) -> None:
    keras.utils.set_random_seed(0)
    space = SPACES[version]
    hypermodel = build_hypermodel(space, SIZE, CLASSES, **TRAINING)
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    raw = photos.images.astype("float32")  # 0-255, no preprocessing
    before = [weights.copy() for weights in model.get_weights()]

    history = hypermodel.fit(hp, model, raw, photos.labels, batch_size=10, epochs=1, verbose=0)

    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    first, second = model.predict(raw, verbose=0), model.predict(raw, verbose=0)
    np.testing.assert_array_equal(first, second)  # augmentation and dropout are off
    np.testing.assert_allclose(first.sum(axis=1), 1.0, rtol=1e-5)

    files = ModelArtifacts(tmp_path / "export")
    files.directory.mkdir()
    assert export_model(model, files, [f"class{i}" for i in range(CLASSES)], SIZE) == [
        "savedmodel",
        "keras",
    ]
    np.save(tmp_path / "raw.npy", raw)
    # A fresh process that never imports this project loads both exports.
    probe = (
        "import json, sys, numpy as np, keras, tensorflow as tf\n"
        "raw = np.load(sys.argv[1] + '/raw.npy')\n"
        "savedmodel = tf.saved_model.load(sys.argv[1] + '/export/savedmodel')\n"
        "served = savedmodel.serve(raw).numpy()\n"
        "loaded = keras.saving.load_model(sys.argv[1] + '/export/model.keras')\n"
        "called = [np.asarray(loaded(raw)).tolist() for _ in range(2)]\n"
        "print(json.dumps([served.tolist(), loaded.predict(raw, verbose=0).tolist(), *called]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    served, loaded, *called = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(served, first, atol=1e-5)
    np.testing.assert_allclose(loaded, first, atol=1e-5)
    # Called plainly, as users do, the exported model augments nothing either.
    for probabilities in called:
        np.testing.assert_allclose(probabilities, first, atol=1e-5)


def test_version_2_defaults_are_the_declared_ones() -> None:
    model, hp = build(CodelabV2Space())

    defaults = {item.name: item.default for item in HYPERPARAMETERS}
    assert hp.values == {name: value for name, value in defaults.items() if name != "dense_units"}
    types = layer_types(model)
    assert types[1] == "Sequential"  # the augmentation, first on the raw image
    assert layer_types(model.layers[1]) == [
        "RandomFlip",
        "RandomRotation",
        "RandomZoom",
        "RandomContrast",
    ]
    assert types.count("MaxPooling2D") == 4 and types.count("BatchNormalization") == 4
    assert [layer.filters for layer in model.layers if type(layer).__name__ == "Conv2D"] == [
        32,
        64,
        128,
        256,
    ]
    assert types[-3:] == ["GlobalAveragePooling2D", "Dropout", "Dense"]
    assert model.output.dtype == "float32" and model.output_shape == (None, CLASSES)
    assert decay_steps(model) == TRAINING["steps_per_epoch"] * TRAINING["epochs"]
    assert model.loss.get_config()["label_smoothing"] == pytest.approx(0.1)


def test_every_choice_of_version_2_builds() -> None:
    model, hp = build(
        v2(
            conv_blocks={"fixed": 3},
            base_filters={"fixed": 16},
            filter_growth={"fixed": 1.5},
            batch_norm={"fixed": False},
            one_by_one_conv={"fixed": True},
            downsampling={"fixed": "strided_conv"},
            head={"fixed": "flatten_dense"},
            dense_units={"fixed": 64},
            dropout={"fixed": 0.0},
            augmentation={"fixed": False},
            lr_schedule={"fixed": "constant"},
            label_smoothing={"fixed": 0.0},
        )
    )

    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    # Per block: 3x3, its 1x1 with half the filters, then the strided 3x3 that halves the image.
    assert [(conv.filters, conv.kernel_size[0], conv.strides[0]) for conv in convs] == [
        (16, 3, 1), (8, 1, 1), (16, 3, 2),
        (24, 3, 1), (12, 1, 1), (24, 3, 2),
        (36, 3, 1), (18, 1, 1), (36, 3, 2),
    ]  # fmt: skip
    types = layer_types(model)
    assert "BatchNormalization" not in types and "Sequential" not in types
    assert "Dropout" not in types and "MaxPooling2D" not in types
    assert types[-3:] == ["Flatten", "Dense", "Dense"] and model.layers[-2].units == 64
    assert model.layers[-3].output.shape == (None, 8 * 8 * 36)
    assert float(model.optimizer.learning_rate) == pytest.approx(2e-3)
    assert hp.values["dense_units"] == 64 and "zoom" not in hp.values


def test_narrowed_ranges_bound_what_the_tuner_draws(photos: ImageSet, tmp_path: Path) -> None:
    space = v2(
        conv_blocks={"min": 2, "max": 3},
        base_filters={"values": [16, 24]},
        head={"values": ["gap", "gap_dense"]},
        dropout={"fixed": 0.1},
        learning_rate={"min": 0.001, "max": 0.002},
    )
    sampled = sampled_hyperparameters(space, photos, 4, tmp_path)

    assert len(sampled) == 4
    for values in sampled:
        assert 2 <= values["conv_blocks"] <= 3 and values["base_filters"] in (16, 24)
        assert values["head"] in ("gap", "gap_dense") and values["dropout"] == 0.1
        assert 0.001 <= values["learning_rate"] <= 0.002
        assert ("dense_units" in values) == (values["head"] == "gap_dense")


def test_cosine_decay_spans_the_trials_steps() -> None:
    hypermodel = build_hypermodel(CodelabV2Space(), SIZE, CLASSES, steps_per_epoch=7, epochs=3)
    hp = keras_tuner.HyperParameters()
    plain = decay_steps(hypermodel.build(hp))
    hp.Fixed("tuner/epochs", 5)  # Hyperband's own budget of a trial
    by_hyperband = decay_steps(hypermodel.build(hp))

    assert (plain, by_hyperband) == (21, 35)


def test_the_leaderboard_describes_version_2_architectures() -> None:
    _, hp = build(v2(one_by_one_conv={"fixed": True}, filter_growth={"fixed": 1.5}))

    assert describe_architecture(hp.values) == ("32(1x1)→48(1x1)→72(1x1)→108(1x1) | gap | lr 0.002")


def test_the_small_data_focus_is_a_corner_of_the_space() -> None:
    space = CodelabV2Space.model_validate({"version": 2, "hyperparameters": SMALL_DATA_FOCUS})

    model, hp = build(space)

    assert hp.values["batch_norm"] is True and hp.values["augmentation"] is True
    assert hp.values["label_smoothing"] == 0.1 and hp.values["conv_blocks"] == 4
    assert decay_steps(model) == TRAINING["steps_per_epoch"] * TRAINING["epochs"]
