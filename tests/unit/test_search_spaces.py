"""The search spaces: hyperparameters, model shapes, and real training on flower photos."""

from __future__ import annotations

from pathlib import Path

import keras
import keras_tuner
import numpy as np
import pytest

from nas.core.specs import CodelabV2Space, ConvNetSpace, SpaceSpec
from nas.hypermodels import build_hypermodel, min_image_size
from nas.worker.datasets import ImageSet
from tests.support.factories import decoded_flowers
from tests.support.sampling import sampled_hyperparameters

# The smallest size the default space (up to 6 halving blocks) accepts.
SIZE = 64
CLASSES = 5
# Version 1 ignores it; version 2 spans its cosine decay over these steps.
TRAINING = {"steps_per_epoch": 2, "epochs": 1}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> ImageSet:
    """Two real photos of each of the five flower classes, decoded at ``SIZE``."""
    return decoded_flowers(tmp_path_factory, SIZE)


def layer_types(model: keras.Model) -> list[str]:
    """The class names of the model's layers, input first."""
    return [type(layer).__name__ for layer in model.layers]


def test_default_hyperparameters_build_a_compiled_model() -> None:
    space = ConvNetSpace()
    hp = keras_tuner.HyperParameters()

    model = build_hypermodel(space, SIZE, CLASSES, **TRAINING).build(hp)

    assert model.name == "convnet"
    assert model.input_shape == (None, SIZE, SIZE, 3)
    assert model.output_shape == (None, CLASSES)
    assert model.output.dtype == "float32"
    assert model.count_params() > 0
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(space.learning_rates[0])
    assert hp.values["conv_blocks"] == space.min_conv_blocks
    assert layer_types(model).count("MaxPooling2D") == space.min_conv_blocks


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        ("flatten_dense", ["Flatten", "Dense", "Dense"]),
        ("gap", ["GlobalAveragePooling2D", "Dense"]),
        ("gap_dense", ["GlobalAveragePooling2D", "Dense", "Dense"]),
    ],
)
def test_each_head_builds(head: str, expected: list[str]) -> None:
    space = ConvNetSpace(heads=[head], dense_units=[48])
    hp = keras_tuner.HyperParameters()

    model = build_hypermodel(space, SIZE, CLASSES, **TRAINING).build(hp)

    assert layer_types(model)[-len(expected) :] == expected
    assert layer_types(model)[-len(expected) - 1] == "MaxPooling2D"
    assert model.output_shape == (None, CLASSES)
    if head == "gap":
        assert "dense_units" not in hp.values
    else:
        assert model.layers[-2].units == 48


def test_hyperparameters_are_conditional_on_depth_and_head() -> None:
    hypermodel = build_hypermodel(ConvNetSpace(), SIZE, CLASSES, **TRAINING)
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)

    assert hp.is_active("filters_1") and hp.is_active("one_by_one_1")
    assert not hp.is_active("filters_5") and not hp.is_active("one_by_one_5")
    assert hp.is_active("dense_units")
    conditions = {item.name: item.conditions for item in hp.space}
    assert conditions["filters_1"] == []
    assert conditions["filters_2"][0].values == [3, 4, 5, 6]
    assert conditions["one_by_one_5"][0].values == [6]
    assert conditions["dense_units"][0].values == ["flatten_dense", "gap_dense"]

    deepest = keras_tuner.HyperParameters()
    deepest.Fixed("conv_blocks", 6)
    deepest.Fixed("head", "gap")
    deepest.Fixed("filters_5", 256)
    model = hypermodel.build(deepest)

    assert deepest.is_active("filters_5") and deepest.is_active("one_by_one_5")
    assert not deepest.is_active("dense_units")
    assert layer_types(model).count("MaxPooling2D") == 6
    assert model.layers[-2].output.shape == (None, 256)


@pytest.mark.parametrize("space", [ConvNetSpace(), CodelabV2Space()], ids=["v1", "v2"])
def test_mixed_precision_keeps_float32_probabilities(space: SpaceSpec) -> None:
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_hypermodel(space, SIZE, CLASSES, **TRAINING).build(
            keras_tuner.HyperParameters()
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")

    conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    assert conv.compute_dtype == "float16"
    assert model.output.dtype == "float32"


def test_one_by_one_convs_halve_the_filters() -> None:
    space = ConvNetSpace(min_conv_blocks=2, max_conv_blocks=2, filters=[32], one_by_one_conv=[True])
    hp = keras_tuner.HyperParameters()

    model = build_hypermodel(space, SIZE, CLASSES, **TRAINING).build(hp)

    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(layer.filters, layer.kernel_size) for layer in convs] == [
        (32, (3, 3)),
        (16, (1, 1)),
        (32, (3, 3)),
        (16, (1, 1)),
    ]
    assert hp.values["one_by_one_0"] is True


def test_the_default_space_chooses_one_by_one_convs_as_booleans() -> None:
    hp = keras_tuner.HyperParameters()
    build_hypermodel(ConvNetSpace(), SIZE, CLASSES, **TRAINING).build(hp)

    assert hp.values["one_by_one_0"] is False
    assert {type(item).__name__ for item in hp.space if item.name.startswith("one_by_one")} == {
        "Boolean"
    }


def test_a_model_trains_on_real_photos(photos: ImageSet) -> None:
    keras.utils.set_random_seed(0)
    model = build_hypermodel(ConvNetSpace(), SIZE, CLASSES, **TRAINING).build(
        keras_tuner.HyperParameters()
    )
    before = [weights.copy() for weights in model.get_weights()]

    history = model.fit(
        photos.images.astype("float32"), photos.labels, batch_size=5, epochs=1, verbose=0
    )

    assert np.isfinite(history.history["loss"][0])
    assert 0.0 <= history.history["accuracy"][0] <= 1.0
    assert any(
        not np.array_equal(old, new) for old, new in zip(before, model.get_weights(), strict=True)
    )
    probabilities = model.predict(photos.images.astype("float32"), verbose=0)
    assert probabilities.shape == (len(photos.labels), CLASSES)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_a_tuner_samples_the_conditional_space(photos: ImageSet, tmp_path: Path) -> None:
    space = ConvNetSpace(min_conv_blocks=1, max_conv_blocks=3, filters=[4, 8], dense_units=[8])
    sampled = sampled_hyperparameters(space, photos, 3, tmp_path)

    assert len(sampled) == 3
    for values in sampled:
        assert all(f"filters_{index}" in values for index in range(values["conv_blocks"]))
        assert ("dense_units" in values) == (values["head"] != "gap")


def test_min_image_size_is_halved_once_per_block() -> None:
    assert min_image_size(ConvNetSpace()) == 64
    assert min_image_size(ConvNetSpace(min_conv_blocks=1, max_conv_blocks=3)) == 8


def test_the_smallest_image_size_builds_at_the_deepest_depth() -> None:
    space = ConvNetSpace(min_conv_blocks=3, max_conv_blocks=3, heads=["flatten_dense"])
    model = build_hypermodel(space, min_image_size(space), CLASSES, **TRAINING).build(
        keras_tuner.HyperParameters()
    )

    flatten = next(layer for layer in model.layers if isinstance(layer, keras.layers.Flatten))
    assert flatten.output.shape == (None, space.filters[0])


def test_images_smaller_than_the_space_allows_are_rejected() -> None:
    with pytest.raises(ValueError, match="need at least 64 px"):
        build_hypermodel(ConvNetSpace(), 63, CLASSES, **TRAINING)


def test_an_unknown_space_is_rejected() -> None:
    space = ConvNetSpace.model_construct(name="resnet")

    with pytest.raises(ValueError, match="unknown search space 'resnet'"):
        build_hypermodel(space, SIZE, CLASSES, **TRAINING)
