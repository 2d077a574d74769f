"""Tokens and owners on every ``/v1`` route: 401 without a live token, 404 for another
owner's search, everything for an admin. The routes are read from the app's OpenAPI
document, so a new route is covered the day it is added."""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nas.api.token_uses import FLUSH_SECONDS
from nas.cli.launcher import wait_until
from nas.core.settings import Settings
from nas.core.store import Store, TokenRecord
from nas.core.tokens import issue_token
from tests.support.exports import finished_search
from tests.support.factories import ONE_TRIAL, search_body
from tests.support.owners import OWNER, ClientFactory, bearer, secret_part
from tests.support.statements import statements

Route = tuple[str, str]  # (method, path template)


def v1_routes(client: TestClient) -> list[Route]:
    """Every (method, path) the app serves under /v1, read from its OpenAPI document (the
    public view of its routes, stable across FastAPI's ways of storing them)."""
    return sorted(
        (method.upper(), path)
        for path, operations in client.app.openapi()["paths"].items()
        if path.startswith("/v1")
        for method in operations
    )


def call(client: TestClient, route: Route, search_id: str, data_root: Path, **kwargs):
    """Request ``route`` with its path parameters filled in (search id, rank 1)."""
    method, template = route
    path = template.replace("{search_id}", search_id).replace("{rank}", "1")
    path = re.sub(r"\{[^}]+\}", "x", path)
    bodies = {
        ("POST", "/v1/searches"): search_body(data_root / "flowers", tuner=ONE_TRIAL),
        ("POST", "/v1/searches/{search_id}/extend"): {"max_trials": 1},
    }
    return client.request(method, path, json=bodies.get(route), **kwargs)


@dataclass(frozen=True)
class World:
    """Alice's finished search (with a model on disk), and the tokens that knock on it."""

    search_id: str
    alice: TestClient
    bob: TestClient
    admin: TestClient
    alice_token: str


@pytest.fixture
def world(
    client: TestClient,
    client_as: ClientFactory,
    store: Store,
    settings: Settings,
    data_root: Path,
) -> World:
    token = client.headers["Authorization"].removeprefix("Bearer ")
    return World(
        search_id=finished_search(client, store, settings, data_root, "alice-model"),
        alice=client,
        bob=client_as("bob"),
        admin=client_as("root", admin=True),
        alice_token=token,
    )


def revoked_token(store: Store) -> str:
    issued = issue_token(store, OWNER)
    assert store.revoke_token(issued.record.id) is not None
    return issued.secret


def wrong_secret_of(token: str) -> str:
    """Alice's token id with another secret of the same shape."""
    return token[:-43] + "A" * 43


BAD_CREDENTIALS = {
    "no header": lambda world, store: {},
    "empty bearer": lambda world, store: {"Authorization": "Bearer "},
    "basic auth": lambda world, store: {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    "not a token": lambda world, store: bearer("not-a-token"),
    "unknown token": lambda world, store: bearer(f"nas_{'0' * 16}_{'B' * 43}"),
    "right id, wrong secret": lambda world, store: bearer(wrong_secret_of(world.alice_token)),
    "token with a suffix": lambda world, store: bearer(world.alice_token + "x"),
    "token without its last character": lambda world, store: bearer(world.alice_token[:-1]),
    "revoked token": lambda world, store: bearer(revoked_token(store)),
    "hash instead of token": lambda world, store: bearer(
        hashlib.sha256(world.alice_token.encode()).hexdigest()
    ),
}


@pytest.mark.parametrize("credential", BAD_CREDENTIALS)
def test_every_v1_route_refuses_a_missing_or_dead_token(
    world: World, client_as: ClientFactory, store: Store, data_root: Path, credential: str
) -> None:
    stranger = client_as(None)
    headers = BAD_CREDENTIALS[credential](world, store)
    routes = v1_routes(world.alice)
    assert len(routes) >= 9

    for route in routes:
        response = call(stranger, route, world.search_id, data_root, headers=headers)
        assert response.status_code == 401, (route, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert world.alice_token not in response.text

    assert world.admin.get("/v1/searches").json()["total"] == 1  # nothing was submitted
    assert world.alice.get(f"/v1/searches/{world.search_id}").json()["cancel_requested"] is False


def test_token_in_the_query_string_is_not_accepted(world: World, client_as: ClientFactory) -> None:
    stranger = client_as(None)

    for name in ("token", "access_token", "api_key"):
        response = stranger.get("/v1/searches", params={name: world.alice_token})
        assert response.status_code == 401


def test_another_owner_finds_nothing_of_alices_search(
    world: World, store: Store, data_root: Path
) -> None:
    missing = uuid.uuid4().hex
    per_search = [route for route in v1_routes(world.alice) if "{search_id}" in route[1]]
    assert len(per_search) >= 7

    for route in per_search:
        foreign = call(world.bob, route, world.search_id, data_root)
        absent = call(world.bob, route, missing, data_root)
        assert foreign.status_code == 404, (route, foreign.text)
        assert foreign.json() == {"detail": f"no search {world.search_id}"}
        assert absent.json() == {"detail": f"no search {missing}"}
        for allowed in (world.alice, world.admin):
            seen = call(allowed, route, world.search_id, data_root)
            # cancel of a finished search is a 409, and so is extending it a second time
            # once it is queued again: it was found, not hidden
            assert seen.status_code in {200, 202, 409}, (route, seen.text)

    search = store.get_search(world.search_id)
    assert search is not None and search.cancel_requested is False


def test_routes_without_a_search_answer_any_live_token(
    world: World, data_root: Path, client_as: ClientFactory
) -> None:
    expected_for_bob = {
        ("GET", "/v1/searches"): 200,
        ("POST", "/v1/searches"): 201,
        ("GET", "/v1/workers"): 403,
    }
    for route in v1_routes(world.alice):
        if "{search_id}" in route[1]:
            continue
        response = call(client_as("carol"), route, world.search_id, data_root)
        assert response.status_code == expected_for_bob.get(route, response.status_code)
        assert response.status_code not in {401, 404}, (route, response.text)


def test_cancel_reaches_only_the_owner_and_admins(
    client: TestClient, client_as: ClientFactory, store: Store, data_root: Path
) -> None:
    body = search_body(data_root / "flowers", tuner=ONE_TRIAL)
    first = client.post("/v1/searches", json=body).json()["id"]
    second = client.post("/v1/searches", json=body).json()["id"]

    assert client_as("bob").post(f"/v1/searches/{first}/cancel").status_code == 404
    assert [search.status.value for search in (store.get_search(first),)] == ["queued"]
    admin_cancel = client_as("root", admin=True).post(f"/v1/searches/{first}/cancel")
    own_cancel = client.post(f"/v1/searches/{second}/cancel")

    assert (admin_cancel.status_code, admin_cancel.json()["status"]) == (202, "cancelled")
    assert (own_cancel.status_code, own_cancel.json()["status"]) == (202, "cancelled")


def test_lists_hold_only_ones_own_searches_but_admins_see_all(
    client: TestClient, client_as: ClientFactory, data_root: Path
) -> None:
    bob = client_as("bob")
    body = search_body(data_root / "flowers", tuner=ONE_TRIAL)
    alices = {client.post("/v1/searches", json=body).json()["id"] for _ in "ab"}
    bobs = {bob.post("/v1/searches", json=body).json()["id"]}

    def listed(who: TestClient) -> tuple[int, dict[str, str]]:
        page = who.get("/v1/searches").json()
        return page["total"], {item["id"]: item["owner"] for item in page["items"]}

    assert listed(client) == (2, dict.fromkeys(alices, OWNER))
    assert listed(bob) == (1, dict.fromkeys(bobs, "bob"))
    assert listed(client_as("root", admin=True)) == (
        3,
        dict.fromkeys(alices, OWNER) | dict.fromkeys(bobs, "bob"),
    )
    assert listed(client_as("alice")) == listed(client)  # a second token of the same owner


def test_workers_are_for_admins(client: TestClient, client_as: ClientFactory) -> None:
    refused = client.get("/v1/workers")

    assert (refused.status_code, refused.json()) == (403, {"detail": "this needs an admin token"})
    assert client_as("root", admin=True).get("/v1/workers").status_code == 200


def test_a_revoked_token_stops_working_at_once(client_as: ClientFactory, store: Store) -> None:
    issued = issue_token(store, "dave")
    dave = client_as(None)
    dave.headers.update(bearer(issued.secret))
    assert dave.get("/v1/searches").status_code == 200

    store.revoke_token(issued.record.id)

    assert dave.get("/v1/searches").status_code == 401


def test_health_and_the_openapi_document_stay_open(client_as: ClientFactory) -> None:
    stranger = client_as(None)

    assert stranger.get("/healthz").status_code == 200
    assert stranger.get("/docs").status_code == 200
    document = stranger.get("/openapi.json").json()

    assert document["components"]["securitySchemes"]["token"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A token from `nas token create --owner NAME`.",
    }
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            expected = [{"token": []}] if path.startswith("/v1") else None
            assert operation.get("security") == expected, (method, path)


def test_only_json_bodies_are_accepted_nothing_is_uploaded(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    bodies = {
        (method, path): list(operation["requestBody"]["content"])
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    }

    assert bodies == {
        ("post", "/v1/searches"): ["application/json"],
        ("post", "/v1/searches/{search_id}/extend"): ["application/json"],
    }


def test_last_use_of_a_token_is_recorded_off_the_request(
    client: TestClient, client_as: ClientFactory, store: Store
) -> None:
    erin = client_as("erin")

    def erins() -> TokenRecord:
        (token,) = [token for token in store.list_tokens() if token.owner == "erin"]
        return token

    assert erins().last_used_at is None

    with statements(store) as written:
        assert erin.get("/v1/searches").status_code == 200
    assert not any(statement.lstrip().upper().startswith("UPDATE") for statement in written)
    assert erins().last_used_at is None, "noted, not yet written"

    wait_until(lambda: erins().last_used_at is not None, FLUSH_SECONDS * 4, "the use written")
    used_at = erins().last_used_at
    erin.get("/v1/searches")
    client.app.state.token_uses.flush(store)
    assert erins().last_used_at == used_at, "a fresh use is not written again"
    assert erins().revoked_at is None


def test_no_token_or_hash_reaches_the_logs(
    world: World, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = world.alice_token
    secrets = {
        token,
        secret_part(token),
        hashlib.sha256(token.encode()).hexdigest(),
        wrong_secret_of(token),
    }
    caplog.set_level(logging.DEBUG)

    answers = [
        world.alice.get("/v1/searches"),
        world.alice.get(f"/v1/searches/{world.search_id}/models/1/summary"),
        world.alice.post("/v1/searches", json={"dataset": {"path": "/etc"}}),
        world.bob.get(f"/v1/searches/{world.search_id}"),
        world.alice.get("/v1/searches", headers=bearer(wrong_secret_of(token))),
    ]

    assert [answer.status_code for answer in answers] == [200, 200, 422, 404, 401]
    assert caplog.records, "the app logs nothing at DEBUG: this test would prove nothing"
    for secret in secrets:
        assert secret not in caplog.text
        for answer in answers:
            assert secret not in answer.text
            assert secret not in str(answer.headers)
