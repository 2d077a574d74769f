"""The cap on a model's parameters (NAS_LIMIT_MAX_PARAMS): counted before any layer is built,
refused at submit when even the smallest model of a space is over it, and a failed trial (not
a failed search) when one draw is over it."""

from __future__ import annotations

import itertools
import resource
from pathlib import Path

import keras_tuner
import pytest
from fastapi.testclient import TestClient

from nas.api import create_app
from nas.core.settings import Settings
from nas.core.spaces.parameter_counts import codelab_v2_params, convnet_v1_params, smallest_params
from nas.core.specs import CodelabV2Space, ConvNetSpace
from nas.core.store import Store
from nas.core.tokens import issue_token
from nas.hypermodels import build_hypermodel
from nas.hypermodels.capped import ModelTooLarge
from tests.e2e.test_tuners import run_searches, sqlite_only
from tests.support.factories import ONE_TRIAL, search_body
from tests.support.flowers import copy_flowers_slice
from tests.support.model_spaces import CLASSES, SPACES, TRAINING
from tests.support.owners import bearer


@pytest.mark.parametrize("case", SPACES)
def test_the_count_from_hyperparameters_is_the_models_own(case: str) -> None:
    space, size = SPACES[case]
    hypermodel = build_hypermodel(space, size, CLASSES, **TRAINING)
    hp = keras_tuner.HyperParameters()

    model = hypermodel.build(hp)

    assert hypermodel.count_params(hypermodel.declare(hp)) == model.count_params()


def test_a_model_over_the_cap_is_refused_before_its_weights_exist() -> None:
    # The issue's example: about 155 billion parameters, 620 GB of float32 weights.
    space = ConvNetSpace(
        min_conv_blocks=1,
        max_conv_blocks=1,
        filters=[2048],
        heads=["flatten_dense"],
        dense_units=[2048],
    )
    hypermodel = build_hypermodel(space, 384, CLASSES, max_params=50_000_000, **TRAINING)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    with pytest.raises(ModelTooLarge) as refused:
        hypermodel.build(keras_tuner.HyperParameters())

    assert str(refused.value) == (
        "the model has 154,618,892,293 parameters, over the cap of 50,000,000 "
        "(NAS_LIMIT_MAX_PARAMS, or dataset.model_bounds)"
    )
    assert isinstance(refused.value, keras_tuner.errors.FailedTrialError)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kib < 100 * 1024


def test_a_model_at_the_cap_builds() -> None:
    space = ConvNetSpace(min_conv_blocks=2, max_conv_blocks=2, filters=[16], heads=["gap"])
    size = build_hypermodel(space, 32, CLASSES, **TRAINING).build(keras_tuner.HyperParameters())
    hypermodel = build_hypermodel(space, 32, CLASSES, max_params=size.count_params(), **TRAINING)

    assert hypermodel.build(keras_tuner.HyperParameters()).count_params() == size.count_params()


AT_64 = {"image_size": 64}


@pytest.fixture
def capped_client(settings: Settings, store: Store) -> TestClient:
    app = create_app(settings.model_copy(update={"limit_max_params": 100_000}), store)
    return TestClient(app, headers=bearer(issue_token(store, "alice").secret))


def test_a_space_whose_smallest_model_is_over_the_cap_is_refused_at_submit(
    capped_client: TestClient, data_root: Path
) -> None:
    # Two blocks of 256 filters leave 16 x 16 x 256 features to a dense layer of 256 units.
    huge = {"min_conv_blocks": 2, "max_conv_blocks": 2, "filters": [256]}
    flatten_only = {**huge, "heads": ["flatten_dense"], "dense_units": [256]}
    photos = data_root / "flowers"

    refused = capped_client.post(
        "/v1/searches", json=search_body(photos, dataset=AT_64, space=flatten_only, tuner=ONE_TRIAL)
    )
    # A gap head keeps one model of the space under the cap: the search may go on.
    some_fit = capped_client.post(
        "/v1/searches",
        json=search_body(
            photos, dataset=AT_64, space={**huge, "filters": [16, 256]}, tuner=ONE_TRIAL
        ),
    )
    v2_refused = capped_client.post(
        "/v1/searches",
        json=search_body(
            photos,
            dataset=AT_64,
            tuner=ONE_TRIAL,
            space={
                "version": 2,
                # Four blocks of 64 to 512 filters: the convs alone have over 1.5 million.
                "hyperparameters": {
                    "conv_blocks": {"fixed": 4},
                    "base_filters": {"fixed": 64},
                    "filter_growth": {"fixed": 2.0},
                },
            },
        ),
    )

    assert refused.status_code == 422, refused.text
    (error,) = refused.json()["detail"]
    assert error["loc"] == ["body", "space"]
    assert "NAS_LIMIT_MAX_PARAMS (100,000)" in error["msg"]
    assert "at least 8,757,506 parameters" in error["msg"]  # 1x1 convs halve the flatten
    assert some_fit.status_code == 201, some_fit.text
    assert v2_refused.status_code == 422, v2_refused.text
    assert v2_refused.json()["detail"][0]["loc"] == ["body", "space"]


@pytest.mark.slow
@pytest.mark.parametrize("parallel_trials", [1, 2])
def test_a_trial_over_the_cap_fails_at_once_and_the_search_goes_on(
    database_url: str, settings: Settings, store: Store, tmp_path: Path, parallel_trials: int
) -> None:
    sqlite_only(database_url)
    photos = copy_flowers_slice(settings.data_roots[0] / "capped", per_class=6)
    # At 32 px two blocks of 16 filters: a gap head has 2,853 parameters, a flatten head with
    # 64 to 512 dense units 68,000 to 530,000. Four of the five models are over the cap.
    capped = settings.model_copy(
        update={"limit_max_params": 10_000, "parallel_trials": parallel_trials}
    )
    body = {
        "dataset": {"path": str(photos), "image_size": 32},
        "space": {
            "version": 2,
            "hyperparameters": {
                "conv_blocks": {"fixed": 2},
                "base_filters": {"fixed": 16},
                "filter_growth": {"fixed": 1.0},
                "batch_norm": {"fixed": False},
                "one_by_one_conv": {"fixed": False},
                "downsampling": {"fixed": "max_pool"},
                "head": {"values": ["gap", "flatten_dense"]},
                "dense_units": {"values": [64, 128, 256, 512]},
                "dropout": {"fixed": 0.2},
                "augmentation": {"fixed": False},
                "learning_rate": {"fixed": 0.002},
                "lr_schedule": {"fixed": "constant"},
                "label_smoothing": {"fixed": 0.0},
            },
        },
        # The first trial is the space's defaults (a gap head); seed 14 then draws flatten
        # heads (its gap head would be the defaults again).
        "tuner": {"algorithm": "random", "max_trials": 5, "epochs": 1, "batch_size": 8, "seed": 14},
        "export_top_k": 1,
    }

    _, (search,), (trials,) = run_searches(capped, tmp_path, [body])

    over = [trial for trial in trials if trial["hyperparameters"]["head"] == "flatten_dense"]
    under = [trial for trial in trials if trial["hyperparameters"]["head"] == "gap"]
    # KerasTuner alone fails a search at its third failed trial in a row.
    heads = [trial["hyperparameters"]["head"] for trial in trials]
    assert heads[:4] == ["gap"] + ["flatten_dense"] * 3
    for trial in over:
        assert trial["status"] == "failed" and trial["epochs"] == 0
        assert trial["error"].endswith(
            "parameters, over the cap of 10,000 (NAS_LIMIT_MAX_PARAMS, or dataset.model_bounds)"
        )
        assert "the model has " in trial["error"]
    (trained,) = under
    assert trained["status"] == "completed" and trained["params"] == 2853
    assert search["status"] == "succeeded"
    assert search["best_trial"]["trial_id"] == trained["trial_id"]


def every_v1_model(space: ConvNetSpace, size: int) -> list[int]:
    """The parameters of each model of a small version 1 space, listed one by one."""
    counts = []
    block_choices = list(itertools.product(space.filters, space.one_by_one_conv))
    for depth in range(space.min_conv_blocks, space.max_conv_blocks + 1):
        for blocks in itertools.product(block_choices, repeat=depth):
            for head, units in itertools.product(space.heads, space.dense_units):
                counts.append(convnet_v1_params(size, 2, blocks, head, units))
    return counts


def every_v2_model(space: CodelabV2Space, size: int) -> list[int]:
    """The parameters of each model of a version 2 space, listed one by one."""
    names = [
        "conv_blocks", "base_filters", "filter_growth", "batch_norm",
        "one_by_one_conv", "downsampling", "head", "dense_units",
    ]  # fmt: skip
    ranges = {item.name: item for item in space.resolved_hyperparameters()}
    choices = [
        range(int(ranges[name].min), int(ranges[name].max) + 1)
        if ranges[name].kind == "int"
        else (False, True)
        if ranges[name].kind == "boolean"
        else ranges[name].choices
        for name in names
    ]
    return [
        codelab_v2_params(size, 2, dict(zip(names, values, strict=True)))
        for values in itertools.product(*choices)
    ]


@pytest.mark.parametrize("size", [16, 40, 384])
def test_the_smallest_model_is_the_least_of_every_model(size: int) -> None:
    v1_space = ConvNetSpace(min_conv_blocks=1, max_conv_blocks=3, filters=[8, 64, 512])
    v2_space = CodelabV2Space().with_depth_at_most(4)

    assert smallest_params(v1_space, size, 2) == min(every_v1_model(v1_space, size))
    assert smallest_params(v2_space, size, 2) == min(every_v2_model(v2_space, size))
