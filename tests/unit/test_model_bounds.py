"""Bounds that scale with the data: FLOPs estimated from the hyperparameters match the
layers Keras builds, the caps follow the photos, and a model over them fails unbuilt."""

from __future__ import annotations

import keras
import keras_tuner
import pytest

from nas.core.spaces.codelab_v2 import HYPERPARAMETERS
from nas.core.spaces.data_bounds import model_bounds
from nas.core.spaces.flop_counts import codelab_v2_flops
from nas.core.spaces.parameter_counts import codelab_v2_params
from nas.core.specs import CodelabV2Space, ConvNetSpace, HyperparameterRange
from nas.hypermodels import build_hypermodel
from nas.hypermodels.capped import ModelTooCostly
from tests.support.model_spaces import CLASSES, SPACES, TRAINING

LIMITS = {"limit_max_params": 50_000_000, "limit_max_flops": 20_000_000_000}
DEFAULTS = {item.name: item.default for item in HYPERPARAMETERS} | {"dense_units": None}
#: The issue's waste: six blocks from 64 filters doubling, for 2,000 photos at 64 px.
WIDE = DEFAULTS | {"conv_blocks": 6, "base_filters": 64, "filter_growth": 2.0}


def keras_flops(model: keras.Model) -> int:
    """2 FLOPs per weight use of every conv and dense layer of ``model``, from its layers."""
    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, _ = layer.output.shape
            flops += 2 * int(layer.kernel.shape.num_elements()) * height * width
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * int(layer.kernel.shape.num_elements())
    return flops


@pytest.mark.parametrize("case", SPACES)
def test_the_flop_estimate_is_that_of_the_layers_built(case: str) -> None:
    space, size = SPACES[case]
    hypermodel = build_hypermodel(space, size, CLASSES, **TRAINING)
    hp = keras_tuner.HyperParameters()

    model = hypermodel.build(hp)

    assert hypermodel.count_flops(hypermodel.declare(hp)) == keras_flops(model)


def test_the_caps_follow_the_photos_and_keep_the_default_model() -> None:
    space = CodelabV2Space()
    bounds = model_bounds(space, train_images=2_000, image_size=64, **LIMITS)

    assert bounds.scaled_to_data
    assert (bounds.max_params, bounds.max_flops) == (2_000_000, 60_000 * 64 * 64)
    assert codelab_v2_params(64, 5, WIDE) > bounds.max_params
    assert codelab_v2_flops(64, 5, WIDE) > bounds.max_flops
    assert codelab_v2_params(64, 5, DEFAULTS) < bounds.max_params
    assert codelab_v2_flops(64, 5, DEFAULTS) < bounds.max_flops
    # A few photos still allow the default model; more photos or pixels, larger models.
    assert model_bounds(space, train_images=40, image_size=32, **LIMITS).max_params == 1_000_000
    larger = model_bounds(space, train_images=3_000, image_size=192, **LIMITS)
    assert larger.max_params == 9_000_000 and larger.max_flops == 60_000 * 192 * 192
    # Never over the operator's caps.
    tight = model_bounds(
        space, train_images=2_000, image_size=64, limit_max_params=500, limit_max_flops=700
    )
    assert (tight.max_params, tight.max_flops) == (500, 700)


def test_widths_set_in_the_request_keep_only_the_operators_caps() -> None:
    wide = CodelabV2Space(hyperparameters={"base_filters": HyperparameterRange(fixed=64)})
    narrow_depth = CodelabV2Space(hyperparameters={"conv_blocks": HyperparameterRange(max=3)})
    v1 = ConvNetSpace(filters=[256, 512])

    for space in (wide, v1):
        bounds = model_bounds(space, train_images=100, image_size=64, **LIMITS)
        assert not bounds.scaled_to_data
        assert (bounds.max_params, bounds.max_flops) == (50_000_000, 20_000_000_000)
    assert model_bounds(narrow_depth, train_images=100, image_size=64, **LIMITS).scaled_to_data


def test_a_model_over_the_flop_cap_fails_before_a_layer_is_built() -> None:
    space = CodelabV2Space()
    bounds = model_bounds(space, train_images=2_000, image_size=64, **LIMITS)
    hypermodel = build_hypermodel(
        space, 64, CLASSES, max_params=50_000_000, max_flops=bounds.max_flops, **TRAINING
    )
    hp = keras_tuner.HyperParameters()
    hypermodel.declare(hp)
    hp.values |= {"conv_blocks": 6, "base_filters": 64, "filter_growth": 2.0}
    keras.backend.clear_session()

    with pytest.raises(ModelTooCostly) as refused:
        hypermodel.build(hp)

    expected = codelab_v2_flops(64, CLASSES, dict(DEFAULTS | hp.values))
    assert str(refused.value).startswith(f"the model takes {expected:,} FLOPs per image")
    assert isinstance(refused.value, keras_tuner.errors.FailedTrialError)
    # Nothing was built: Keras named no layer since the session was cleared.
    assert keras.backend.get_uid("conv2d") == 1
