"""The operator's limits: body size, budget caps, queued searches per owner, request rate."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from nas.api import create_app
from nas.api.rate_limit import FORGET_FULL_PAST, RateLimiter
from nas.core.settings import Settings
from nas.core.store import Store
from nas.core.tokens import issue_token
from tests.support.factories import ONE_TRIAL, search_body
from tests.support.leases import join
from tests.support.owners import bearer

LIMITS = {
    "limit_max_trials": 8,
    "limit_epochs": 5,
    "limit_image_size": 64,
    "limit_batch_size": 16,
    "limit_classes": 3,
    "limit_queued_per_owner": 2,
    "limit_body_bytes": 4096,
    "rate_limit_per_minute": 60.0,
    "rate_limit_burst": 40,
}

LimitedClient = Callable[[str], TestClient]


@pytest.fixture
def limited(settings: Settings, store: Store) -> Iterator[LimitedClient]:
    """``limited(owner)``: a client with a new token of ``owner`` on an app with LIMITS."""
    app = create_app(settings.model_copy(update=LIMITS), store)
    made: list[TestClient] = []

    def make(owner: str) -> TestClient:
        made.append(TestClient(app, headers=bearer(issue_token(store, owner).secret)))
        return made[-1]

    yield make
    for client in made:
        client.close()


def body(
    data_root: Path, dataset: dict[str, Any] | None = None, tuner: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A request within LIMITS, with ``dataset`` and ``tuner`` merged in."""
    within = {**ONE_TRIAL, "batch_size": 8}
    return search_body(data_root / "flowers", dataset=dataset, tuner={**within, **(tuner or {})})


CAPS = {
    "max_trials": ("tuner", "max_trials", "NAS_LIMIT_MAX_TRIALS"),
    "epochs": ("tuner", "epochs", "NAS_LIMIT_EPOCHS"),
    "batch_size": ("tuner", "batch_size", "NAS_LIMIT_BATCH_SIZE"),
    "image_size": ("dataset", "image_size", "NAS_LIMIT_IMAGE_SIZE"),
}


@pytest.mark.parametrize("field", CAPS)
def test_each_cap_names_its_field(limited: LimitedClient, data_root: Path, field: str) -> None:
    section, key, variable = CAPS[field]
    cap = LIMITS[variable.removeprefix("NAS_").lower()]
    alice = limited("alice")

    at_cap = alice.post("/v1/searches", json=body(data_root, **{section: {key: cap}}))
    over = alice.post("/v1/searches", json=body(data_root, **{section: {key: cap + 1}}))

    assert at_cap.status_code == 201, at_cap.text
    assert over.status_code == 422
    (error,) = over.json()["detail"]
    assert error["loc"] == ["body", section, key]
    assert f"at most {cap}" in error["msg"] and variable in error["msg"]


def test_every_cap_broken_at_once_is_named_at_once(limited: LimitedClient, data_root: Path) -> None:
    greedy = body(
        data_root,
        dataset={"image_size": 128},
        tuner={"max_trials": 9, "epochs": 6, "batch_size": 17},
    )

    response = limited("alice").post("/v1/searches", json=greedy)

    assert response.status_code == 422
    assert {tuple(error["loc"]) for error in response.json()["detail"]} == {
        ("body", section, key) for section, key, _ in CAPS.values()
    }


@pytest.mark.parametrize("classes", [3, 4])
def test_class_names_are_capped(limited: LimitedClient, data_root: Path, classes: int) -> None:
    dataset = {
        "path": None,
        "tfrecords": str(data_root / "shards" / "*.tfrec"),
        "class_names": [f"class {index}" for index in range(classes)],
    }

    response = limited("alice").post("/v1/searches", json=body(data_root, dataset=dataset))

    assert response.status_code == 422
    named = [error for error in response.json()["detail"] if "class_names" in error["loc"]]
    if classes > LIMITS["limit_classes"]:
        (error,) = named
        assert error["loc"] == ["body", "dataset", "class_names"]
        assert "at most 3 classes" in error["msg"] and "NAS_LIMIT_CLASSES" in error["msg"]
    else:
        assert named == []  # refused only because no shard matches


def test_hyperband_may_not_plan_more_trials_than_the_cap(
    limited: LimitedClient, data_root: Path
) -> None:
    alice = limited("alice")
    # epochs 2, factor 2 plans 5 trials; epochs 4, factor 2 plans 15: over the cap of 8
    small = body(data_root, tuner={"algorithm": "hyperband", "epochs": 2, "hyperband_factor": 2})
    large = body(data_root, tuner={"algorithm": "hyperband", "epochs": 4, "hyperband_factor": 2})

    assert alice.post("/v1/searches", json=small).status_code == 201
    refused = alice.post("/v1/searches", json=large)

    assert refused.status_code == 422
    (error,) = refused.json()["detail"]
    assert error["loc"] == ["body", "tuner", "epochs"]
    assert "plans 15 trials" in error["msg"] and "NAS_LIMIT_MAX_TRIALS" in error["msg"]


def test_queued_searches_per_owner_are_capped(
    limited: LimitedClient, store: Store, data_root: Path
) -> None:
    alice, bob = limited("alice"), limited("bob")
    first, _second = (alice.post("/v1/searches", json=body(data_root)) for _ in "12")

    refused = alice.post("/v1/searches", json=body(data_root))

    assert refused.status_code == 429
    assert "NAS_LIMIT_QUEUED_PER_OWNER" in refused.json()["detail"]
    assert bob.post("/v1/searches", json=body(data_root)).status_code == 201
    assert alice.post(f"/v1/searches/{first.json()['id']}/cancel").status_code == 202
    assert alice.post("/v1/searches", json=body(data_root)).status_code == 201
    join(store, "worker-1")  # a running search leaves the queue
    assert alice.post("/v1/searches", json=body(data_root)).status_code == 201
    assert store.list_searches(limit=100, offset=0, owner="alice").total == 4


def test_a_body_over_the_limit_is_refused_unread(limited: LimitedClient, data_root: Path) -> None:
    alice = limited("alice")
    padded = body(data_root)
    padded["space"]["filters"] = [16] * 2000  # valid JSON, far over 4096 bytes
    raw = json.dumps(padded).encode()

    declared = alice.post("/v1/searches", content=raw, headers={"content-type": "application/json"})
    streamed = alice.post(
        "/v1/searches",
        content=iter([raw[:2000], raw[2000:4000], raw[4000:]]),  # chunked, no Content-Length
        headers={"content-type": "application/json"},
    )

    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert "NAS_LIMIT_BODY_BYTES" in response.json()["detail"]
    assert alice.get("/v1/searches").json()["total"] == 0
    assert alice.post("/v1/searches", json=body(data_root)).status_code == 201


def test_a_token_past_its_rate_is_told_when_to_retry(
    settings: Settings, store: Store, data_root: Path
) -> None:
    limits = {"rate_limit_per_minute": 6.0, "rate_limit_burst": 3}
    app = create_app(settings.model_copy(update=limits), store)
    with (
        TestClient(app, headers=bearer(issue_token(store, "alice").secret)) as alice,
        TestClient(app, headers=bearer(issue_token(store, "bob").secret)) as bob,
    ):
        codes = [alice.get("/v1/searches").status_code for _ in range(4)]
        throttled = alice.get("/v1/searches")
        other_token = bob.get("/v1/searches")

    assert codes == [200, 200, 200, 429]
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["Retry-After"]) <= 10
    assert "NAS_RATE_LIMIT_PER_MINUTE" in throttled.json()["detail"]
    assert other_token.status_code == 200


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_refills_at_its_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=30.0, burst=2, clock=clock)  # one request per 2 s

    assert [limiter.acquire("a"), limiter.acquire("a")] == [0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(2.0)
    assert limiter.acquire("b") == 0.0
    clock.now += 1.0
    assert limiter.acquire("a") == pytest.approx(1.0)
    clock.now += 1.0
    assert limiter.acquire("a") == 0.0
    clock.now += 60.0  # a long pause refills only up to the burst
    assert [limiter.acquire("a") for _ in range(3)][2] == pytest.approx(2.0)


def test_failed_authentications_are_limited_per_address(settings: Settings, store: Store) -> None:
    limits = {"auth_failures_per_minute": 6.0, "auth_failures_burst": 3}
    app = create_app(settings.model_copy(update=limits), store)
    alice = bearer(issue_token(store, "alice").secret)
    revoked = issue_token(store, "carol")
    store.revoke_token(revoked.record.id)
    refused_tokens = [
        bearer(f"nas_{'0' * 16}_{'B' * 43}"),  # well formed, unknown
        bearer(revoked.secret),
        {},  # no token at all
    ]
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with (
        TestClient(app, client=("203.0.113.5", 40000)) as shared_address,
        TestClient(app, client=("198.51.100.7", 40000)) as elsewhere,
    ):
        alice_before = shared_address.get("/v1/searches", headers=alice)
        refused = [shared_address.get("/v1/searches", headers=h) for h in refused_tokens]
        statements.clear()
        throttled = [
            shared_address.get("/v1/searches", headers=bearer(f"nas_{'1' * 16}_{'C' * 43}"))
            for _ in range(20)
        ]
        throttled_statements = list(statements)
        alice_after = shared_address.get("/v1/searches", headers=alice)
        other_address = elsewhere.get("/v1/searches", headers=refused_tokens[0])
        bob = bearer(issue_token(store, "bob").secret)
        bob_elsewhere = elsewhere.get("/v1/searches", headers=bob)

    assert alice_before.status_code == 200
    assert [r.status_code for r in refused] == [401, 401, 401]
    assert len({r.text for r in refused}) == 1  # one body for every refused token
    assert {r.status_code for r in throttled} == {429}
    assert 1 <= int(throttled[0].headers["Retry-After"]) <= 10
    assert "NAS_AUTH_FAILURES_PER_MINUTE" in throttled[0].json()["detail"]
    assert throttled_statements == []  # refused without a database lookup
    # The address is throttled, not the valid tokens used from it, nor other addresses.
    assert alice_after.status_code == 200
    assert other_address.status_code == 401
    assert bob_elsewhere.status_code == 200


def test_rate_limiter_peeks_without_taking_and_forgets_refilled_keys() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60.0, burst=1, clock=clock)

    assert [limiter.retry_after("a"), limiter.retry_after("a")] == [0.0, 0.0]
    assert limiter.acquire("a") == 0.0
    assert limiter.retry_after("a") == pytest.approx(1.0)
    for index in range(FORGET_FULL_PAST):
        limiter.acquire(f"address-{index}")
    clock.now += 1.0  # every bucket has refilled
    limiter.acquire("last")

    assert len(limiter._buckets) == 1  # only the bucket "last" just took from
