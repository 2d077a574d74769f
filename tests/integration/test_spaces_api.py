"""Named, versioned spaces over HTTP: the listing, pinning and narrowing, and version 1 kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from nas.core.specs import SearchSpec
from nas.core.store import Store
from tests.support.factories import ONE_TRIAL, search_body
from tests.support.owners import ClientFactory

V2 = {"name": "codelab_convnet", "version": 2}


def body(data_root: Path, space: dict[str, Any] | None, image_size: int = 64) -> dict[str, Any]:
    """A one-trial request on the test photos with ``space`` (none: the key is left out)."""
    return search_body(
        data_root / "flowers", dataset={"image_size": image_size}, space=space, tuner=ONE_TRIAL
    )


def v2_space(**ranges: dict[str, Any]) -> dict[str, Any]:
    return {**V2, "hyperparameters": ranges}


def test_spaces_are_listed_with_every_hyperparameter(client: TestClient) -> None:
    response = client.get("/v1/spaces")

    assert response.status_code == 200, response.text
    spaces = {(space["name"], space["version"]): space for space in response.json()["items"]}
    assert set(spaces) == {("codelab_convnet", 1), ("codelab_convnet", 2)}
    v2 = {item["name"]: item for item in spaces["codelab_convnet", 2]["hyperparameters"]}
    assert {
        "conv_blocks", "base_filters", "filter_growth", "batch_norm", "one_by_one_conv",
        "downsampling", "head", "dense_units", "dropout", "augmentation", "rotation", "zoom",
        "contrast", "learning_rate", "lr_schedule", "label_smoothing",
    } == set(v2)  # fmt: skip
    assert v2["conv_blocks"] | {"min": 2, "max": 6} == v2["conv_blocks"]
    assert v2["head"]["type"] == "choice" and "gap" in v2["head"]["choices"]
    assert v2["dense_units"]["active_when"]["hyperparameter"] == "head"
    assert v2["learning_rate"]["sampling"] == "log"
    assert v2["batch_norm"] == v2["batch_norm"] | {"type": "boolean", "default": True}
    v1 = {item["name"]: item for item in spaces["codelab_convnet", 1]["hyperparameters"]}
    assert v1["conv_blocks"]["default"] == 2 and v1["learning_rate"]["default"] == 1e-3


def test_listing_spaces_needs_a_token(client_as: ClientFactory) -> None:
    assert client_as(None).get("/v1/spaces").status_code == 401


def test_a_request_pins_and_narrows_hyperparameters(
    client: TestClient, store: Store, data_root: Path
) -> None:
    space = v2_space(
        conv_blocks={"min": 3, "max": 4},
        head={"values": ["gap", "gap_dense"]},
        dropout={"fixed": 0.2},
        batch_norm={"fixed": True},
        learning_rate={"min": 0.001, "max": 0.003},
    )

    response = client.post("/v1/searches", json=body(data_root, space))

    assert response.status_code == 201, response.text
    stored = SearchSpec.model_validate(store.get_search(response.json()["id"]).spec)
    resolved = {item.name: item for item in stored.space.resolved_hyperparameters()}
    assert (resolved["conv_blocks"].min, resolved["conv_blocks"].max) == (3, 4)
    assert resolved["head"].choices == ("gap", "gap_dense")
    assert (resolved["dropout"].kind, resolved["dropout"].default) == ("fixed", 0.2)
    assert resolved["learning_rate"].default == pytest.approx(0.002)
    assert resolved["zoom"] == next(
        item for item in SearchSpec.model_fields["space"].default.resolved_hyperparameters()
        if item.name == "zoom"
    )  # fmt: skip


BAD_RANGES = {
    "unknown name": ({"colour": {"fixed": "red"}}, "colour", "not a hyperparameter"),
    "outside bounds": ({"dropout": {"fixed": 0.9}}, "dropout", "outside"),
    "not a choice": ({"head": {"values": ["gap", "resnet"]}}, "head", "not one of"),
    "range of a choice": ({"head": {"min": 1}}, "head", "narrow numbers"),
    "min above max": ({"conv_blocks": {"min": 5, "max": 3}}, "conv_blocks", "above max"),
    "bool for a number": ({"dropout": {"fixed": True}}, "dropout", "not a number"),
    "number for a bool": ({"batch_norm": {"fixed": 1}}, "batch_norm", "not a boolean"),
    "two kinds at once": ({"zoom": {"fixed": 0.1, "max": 0.2}}, "zoom", "exactly one"),
    "off the int grid": ({"conv_blocks": {"fixed": 3.5}}, "conv_blocks", "whole number"),
}


@pytest.mark.parametrize("case", BAD_RANGES)
def test_a_bad_range_is_a_422_naming_the_hyperparameter(
    client: TestClient, data_root: Path, case: str
) -> None:
    ranges, name, message = BAD_RANGES[case]

    response = client.post("/v1/searches", json=body(data_root, v2_space(**ranges)))

    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "space", "hyperparameters", name]
    assert message in error["msg"]


def test_an_unknown_version_is_named(client: TestClient, data_root: Path) -> None:
    response = client.post("/v1/searches", json=body(data_root, {"version": 7}))

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "space", "version"]
    assert "known: [1, 2]" in error["msg"]


@pytest.mark.parametrize(
    ("space", "needed"),
    [
        (v2_space(conv_blocks={"max": 5}), 32),
        (v2_space(conv_blocks={"values": [2, 5]}), 32),
        ({"max_conv_blocks": 5}, 32),  # version 1
    ],
)
def test_images_too_small_for_the_depth_are_refused_at_submit(
    client: TestClient, data_root: Path, space: dict | None, needed: int
) -> None:
    too_small = client.post("/v1/searches", json=body(data_root, space, needed - 1))
    enough = client.post("/v1/searches", json=body(data_root, space, needed))

    assert too_small.status_code == 422, too_small.text
    (error,) = too_small.json()["detail"]
    assert error["loc"] == ["body", "dataset", "image_size"]
    assert f"at least {needed} px" in error["msg"]
    assert enough.status_code == 201, enough.text


def test_version_1_bodies_and_stored_specs_keep_their_meaning(
    client: TestClient, store: Store, data_root: Path
) -> None:
    old_body = body(data_root, {"max_conv_blocks": 3, "filters": [16, 32]})
    # A spec stored before versions existed: no `version`, no tuner patience.
    stored_before = {
        "dataset": {"path": "/data/flowers", "image_size": 64, "validation_split": 0.2, "seed": 0},
        "space": {"name": "codelab_convnet", "min_conv_blocks": 2, "max_conv_blocks": 3},
        "tuner": {"algorithm": "random", "max_trials": 2, "epochs": 1},
        "objective": "val_accuracy",
        "export_top_k": 1,
    }

    created = client.post("/v1/searches", json=old_body)

    assert created.status_code == 201, created.text
    spec = store.get_search(created.json()["id"]).spec
    assert spec["space"]["version"] == 1 and spec["space"]["filters"] == [16, 32]
    revalidated = SearchSpec.model_validate(stored_before)
    assert revalidated.space.version == 1 and revalidated.space.max_conv_blocks == 3


def test_a_body_without_space_gets_version_2(
    client: TestClient, store: Store, data_root: Path
) -> None:
    created = client.post("/v1/searches", json=body(data_root, None))

    assert created.status_code == 201, created.text
    space = store.get_search(created.json()["id"]).spec["space"]
    assert space == {**V2, "hyperparameters": {}}


def depth_range(space: dict[str, Any]) -> tuple[float, float]:
    """The fewest and most conv blocks a space of either version records."""
    if space["version"] == 1:
        return space["min_conv_blocks"], space["max_conv_blocks"]
    conv_blocks = space["hyperparameters"]["conv_blocks"]
    return conv_blocks["min"], conv_blocks["max"]


@pytest.mark.parametrize(
    "space",
    [None, v2_space(head={"fixed": "gap"}), {"filters": [16, 32]}],
    ids=["no space", "v2 without conv_blocks", "v1 without depths"],
)
def test_a_default_depth_range_is_fitted_to_the_image_and_recorded(
    client: TestClient, data_root: Path, space: dict | None
) -> None:
    created = client.post("/v1/searches", json=body(data_root, space, 32))

    assert created.status_code == 201, created.text
    recorded = client.get(f"/v1/searches/{created.json()['id']}").json()["spec"]["space"]
    assert depth_range(recorded) == (2, 5)  # 32 px halve 5 times


@pytest.mark.parametrize(
    ("space", "image_size", "field"),
    [
        (v2_space(conv_blocks={"values": [2, 5]}), 16, "space.hyperparameters.conv_blocks"),
        ({"min_conv_blocks": 5}, 16, "space.min_conv_blocks"),  # version 1
        ({"max_conv_blocks": 5}, 16, "space.max_conv_blocks"),
    ],
)
def test_a_depth_range_the_user_set_is_not_fitted(
    client: TestClient, data_root: Path, space: dict, image_size: int, field: str
) -> None:
    refused = client.post("/v1/searches", json=body(data_root, space, image_size))

    assert refused.status_code == 422, refused.text
    (error,) = refused.json()["detail"]
    assert error["loc"] == ["body", "dataset", "image_size"]
    assert field in error["msg"] and "at least 32 px" in error["msg"]
