"""What JSON cannot carry (NaN, Infinity, a number past a double's range, a lone UTF-16
surrogate) and bodies that are not text: a 422 naming the field, in a valid JSON answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from nas.core.settings import Settings
from nas.core.store import Store
from nas.core.tokens import issue_token
from tests.support.live import live_api

JSON = {"content-type": "application/json"}


def strict_json(response: Response) -> object:
    """The answer's body, parsed as RFC 8259 JSON in strict UTF-8 (no NaN, no lone surrogate)."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the answer")

    text = response.content.decode("utf-8")  # strict: a lone surrogate cannot be encoded
    return json.loads(text, parse_constant=refuse)


def flowers(data_root: Path) -> str:
    return json.dumps(str(data_root / "flowers"))


# (raw body with {path} for the dataset folder, the loc of the error)
NOT_JSON_VALUES = {
    "NaN": ('{"dataset": {"path": {path}, "image_size": NaN}}', ["dataset", "image_size"]),
    "Infinity": (
        '{"dataset": {"path": {path}, "validation_split": Infinity}}',
        ["dataset", "validation_split"],
    ),
    "-Infinity": ('{"dataset": {"path": {path}}, "tuner": {"seed": -Infinity}}', ["tuner", "seed"]),
    "1e400": (
        '{"dataset": {"path": {path}, "validation_split": 1e400}}',
        ["dataset", "validation_split"],
    ),
    "NaN in a list": (
        '{"dataset": {"path": {path}}, "space": {"filters": [16, NaN]}}',
        ["space", "filters", 1],
    ),
    "lone surrogate": ('{"dataset": {"path": "\\ud800"}}', ["dataset", "path"]),
    "lone surrogate in a key": (
        '{"dataset": {"path": {path}}, "space": {"hyperparameters": {"\\udc00x": {"fixed": 1}}}}',
        ["space", "hyperparameters"],
    ),
    "NaN alone": ("NaN", []),
}


def post_raw(client: TestClient, raw: str, data_root: Path) -> Response:
    return client.post(
        "/v1/searches", content=raw.replace("{path}", flowers(data_root)), headers=JSON
    )


@pytest.mark.parametrize("case", NOT_JSON_VALUES)
def test_what_json_cannot_carry_is_a_422_naming_the_field(
    client: TestClient, data_root: Path, case: str
) -> None:
    raw, loc = NOT_JSON_VALUES[case]

    response = post_raw(client, raw, data_root)

    assert response.status_code == 422, response.text
    (error,) = strict_json(response)["detail"]
    assert error["loc"] == ["body", *loc]
    assert "JSON" in error["msg"]
    assert client.get("/v1/searches").json()["total"] == 0


def test_a_body_that_is_not_text_is_a_422_in_valid_json(client: TestClient) -> None:
    response = client.post(
        "/v1/searches", content=b"\xff\xfe\x00", headers={"content-type": "text/plain"}
    )

    assert response.status_code == 422, response.text
    (error,) = strict_json(response)["detail"]
    assert error["loc"] == ["body"]


def test_a_valid_body_still_goes_through(client: TestClient, data_root: Path) -> None:
    raw = (
        '{"dataset": {"path": {path}, "image_size": 32, "validation_split": 0.25},'
        ' "space": {"max_conv_blocks": 3}}'
    )

    response = post_raw(client, raw, data_root)

    assert response.status_code == 201, response.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_over_real_http_nan_and_a_lone_surrogate_are_422s(
    settings: Settings, store: Store, data_root: Path, tmp_path: Path
) -> None:
    token = issue_token(store, "alice").secret
    with live_api(settings, tmp_path / "logs", token) as api:
        answers = {
            case: post_raw(api, NOT_JSON_VALUES[case][0], data_root)
            for case in ("NaN", "1e400", "lone surrogate")
        }
        total = api.get("/v1/searches").json()["total"]

    for case, response in answers.items():
        assert response.status_code == 422, (case, response.text)
        (error,) = strict_json(response)["detail"]
        assert error["loc"] == ["body", *NOT_JSON_VALUES[case][1]]
    assert total == 0
