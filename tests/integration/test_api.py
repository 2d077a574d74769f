"""The HTTP API on a real store (SQLite file and PostgreSQL) and real photo folders."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
from fastapi.testclient import TestClient
from httpx import Response

from nas.api import create_app
from nas.core.settings import Settings
from nas.core.specs import hyperband_trials
from nas.core.store import SearchStatus, SlotLease, Store, TrialStatus
from tests.support.factories import MINIMAL_SPACE, Body, error_locs, search_body, submit
from tests.support.leases import finish_trials, join
from tests.support.owners import ClientFactory

Loc = tuple[str | int, ...]


def rejection(client: TestClient, body: Body) -> tuple[list[Loc], list[str]]:
    """Submit a body that must be refused; the locations and messages of its errors."""
    response = client.post("/v1/searches", json=body)
    locs = error_locs(response)
    return locs, [error["msg"] for error in response.json()["detail"]]


def queued_ids(store: Store) -> list[str]:
    """Every queued search, oldest first."""
    page = store.list_searches(limit=1000, owner=None)
    return [search.id for search in reversed(page.items) if search.status == SearchStatus.QUEUED]


def add_photos(folder: Path, source: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for photo in sorted(source.iterdir())[:count]:
        shutil.copy(photo, folder / photo.name)


# Submission ---------------------------------------------------------------------------------


def test_minimal_submission_is_queued_with_defaults(
    client: TestClient, store: Store, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(data_root)
    body = search_body(data_root / "flowers", dataset={"path": "flowers"})

    created = submit(client, body)

    assert created["status"] == "queued"
    assert len(created["id"]) == 32
    spec = created["spec"]
    assert spec["tuner"]["algorithm"] == "asha"
    assert spec["export_top_k"] == 3
    assert spec["objective"] == "val_accuracy"
    assert spec["space"]["max_conv_blocks"] == 3
    assert spec["dataset"]["image_size"] == 32
    # 10 configurations at 2 epochs, the best 3 of them to 4, the best of those to 10.
    assert (spec["tuner"]["max_trials"], spec["tuner"]["epochs"]) == (10, 10)
    assert created["trials_planned"] == 14
    assert spec["dataset"]["path"] == str((data_root / "flowers").resolve())
    assert created["trials_done"] == 0
    assert created["best_trial"] is None
    assert created["cancel_requested"] is False
    stored = store.get_search(created["id"])
    assert stored is not None
    assert stored.spec["dataset"]["path"] == spec["dataset"]["path"]

    fetched = client.get(f"/v1/searches/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == created


@pytest.mark.parametrize(("epochs", "factor"), [(9, 3), (10, 3), (20, 2)])
def test_hyperband_plans_one_iteration_of_trials(
    client: TestClient, data_root: Path, epochs: int, factor: int
) -> None:
    tuner = {"algorithm": "hyperband", "epochs": epochs, "hyperband_factor": factor}
    created = submit(client, search_body(data_root / "flowers", tuner={**tuner, "max_trials": 1}))

    assert created["trials_planned"] == hyperband_trials(epochs, factor)
    assert created["trials_planned"] > 1


def test_list_is_newest_first_and_paginated(client: TestClient, data_root: Path) -> None:
    ids = [
        submit(
            client,
            search_body(data_root / "flowers", tuner={"algorithm": "random", "max_trials": trials}),
        )["id"]
        for trials in range(1, 6)
    ]
    newest_first = ids[::-1]

    pages = [client.get("/v1/searches", params={"limit": 2, "offset": o}) for o in (0, 2, 4, 6)]

    for offset, page in zip((0, 2, 4, 6), pages, strict=True):
        assert page.status_code == 200
        listed = page.json()
        assert (listed["total"], listed["limit"], listed["offset"]) == (5, 2, offset)
        assert [item["id"] for item in listed["items"]] == newest_first[offset : offset + 2]
    everything = client.get("/v1/searches").json()
    assert [item["id"] for item in everything["items"]] == newest_first
    assert [item["trials_planned"] for item in everything["items"]] == [5, 4, 3, 2, 1]


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"limit": 0}, ("query", "limit")),
        ({"limit": 101}, ("query", "limit")),
        ({"offset": -1}, ("query", "offset")),
    ],
)
def test_list_rejects_bad_pages(client: TestClient, params: dict[str, int], loc: Loc) -> None:
    assert error_locs(client.get("/v1/searches", params=params)) == [loc]


# Rejected submissions -----------------------------------------------------------------------


@dataclass(frozen=True)
class Folders:
    """Where a rejected request's dataset may point."""

    root: Path  # the data root, holding the valid ``flowers``
    scratch: Path  # a fresh folder inside the data root, removed after the test
    outside: Path  # a fresh folder outside every data root

    @property
    def photos(self) -> Path:
        return self.root / "flowers" / "daisy"


@pytest.fixture
def folders(data_root: Path, tmp_path: Path) -> Iterator[Folders]:
    scratch = data_root / f"scratch-{uuid.uuid4().hex}"
    scratch.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    yield Folders(root=data_root, scratch=scratch, outside=outside)
    shutil.rmtree(scratch)


def with_dataset(folders: Folders, path: Path | str, **dataset: Any) -> Body:
    return search_body(folders.root / "flowers", dataset={"path": str(path), **dataset})


def new_folder(parent: Path) -> Path:
    """A new empty folder in ``parent`` (cases share the same ``Folders``)."""
    folder = parent / uuid.uuid4().hex[:8]
    folder.mkdir()
    return folder


def one_class(folders: Folders) -> Body:
    dataset = new_folder(folders.scratch)
    add_photos(dataset / "daisy", folders.photos, 3)
    return with_dataset(folders, dataset)


def empty_class(folders: Folders) -> Body:
    dataset = new_folder(folders.scratch)
    add_photos(dataset / "daisy", folders.photos, 3)
    (dataset / "roses").mkdir()
    return with_dataset(folders, dataset)


def symlink_out(folders: Folders) -> Body:
    target = new_folder(folders.outside) / "flowers"
    shutil.copytree(folders.root / "flowers", target)
    link = new_folder(folders.scratch) / "link"
    link.symlink_to(target, target_is_directory=True)
    return with_dataset(folders, link)


def without_dataset(folders: Folders) -> Body:
    body = search_body(folders.root / "flowers")
    del body["dataset"]
    return body


REJECTED: dict[str, tuple[Callable[[Folders], Body], Loc]] = {
    "unknown algorithm": (
        lambda f: search_body(f.root / "flowers", tuner={"algorithm": "grid"}),
        ("body", "tuner", "algorithm"),
    ),
    "no trials": (
        lambda f: search_body(f.root / "flowers", tuner={"max_trials": 0}),
        ("body", "tuner", "max_trials"),
    ),
    "no trial at a time": (
        lambda f: search_body(f.root / "flowers", tuner={"max_parallel_trials": 0}),
        ("body", "tuner", "max_parallel_trials"),
    ),
    "image too small": (
        lambda f: search_body(f.root / "flowers", dataset={"image_size": 8}),
        ("body", "dataset", "image_size"),
    ),
    "image too large": (
        lambda f: search_body(f.root / "flowers", dataset={"image_size": 600}),
        ("body", "dataset", "image_size"),
    ),
    "no filters": (
        lambda f: search_body(f.root / "flowers", space={**MINIMAL_SPACE, "filters": []}),
        ("body", "space", "filters"),
    ),
    "duplicate filters": (
        lambda f: search_body(f.root / "flowers", space={**MINIMAL_SPACE, "filters": [32, 64, 32]}),
        ("body", "space", "filters"),
    ),
    "min above max depth": (
        lambda f: search_body(
            f.root / "flowers", space={"min_conv_blocks": 3, "max_conv_blocks": 2}
        ),
        ("body", "space"),
    ),
    "unknown key": (
        lambda f: {**search_body(f.root / "flowers"), "colour": "red"},
        ("body", "colour"),
    ),
    "no dataset": (without_dataset, ("body", "dataset")),
    "outside path": (lambda f: with_dataset(f, "/etc"), ("body", "dataset", "path")),
    "dotdot escape": (
        lambda f: with_dataset(f, f"{f.root / 'flowers'}/../.."),
        ("body", "dataset", "path"),
    ),
    "symlink out": (symlink_out, ("body", "dataset", "path")),
    "missing folder": (
        lambda f: with_dataset(f, f.root / "no-such-folder"),
        ("body", "dataset", "path"),
    ),
    "one class": (one_class, ("body", "dataset", "path")),
    "empty class": (empty_class, ("body", "dataset", "path")),
    "too small for depth": (
        lambda f: search_body(f.root / "flowers", space={"max_conv_blocks": 6}),
        ("body", "dataset", "image_size"),
    ),
}


@pytest.mark.parametrize("case", REJECTED)
def test_bad_submission_names_the_field(
    client: TestClient, store: Store, folders: Folders, case: str
) -> None:
    make_body, loc = REJECTED[case]

    locs, _ = rejection(client, make_body(folders))

    assert locs == [loc]
    assert client.get("/v1/searches").json()["total"] == 0
    assert store.list_searches(limit=10, offset=0, owner=None).total == 0


def test_outside_paths_get_one_answer_whether_or_not_they_exist(
    client: TestClient, data_root: Path
) -> None:
    existing = rejection(client, search_body(data_root / "flowers", dataset={"path": "/etc"}))
    missing = rejection(
        client, search_body(data_root / "flowers", dataset={"path": "/nonexistent-xyz"})
    )

    assert existing == missing
    assert "data root" in existing[1][0]


@pytest.mark.parametrize("linked", ["class folder", "photo"])
def test_links_inside_the_dataset_may_not_leave_the_root(
    client: TestClient, store: Store, folders: Folders, linked: str
) -> None:
    dataset = new_folder(folders.scratch)
    add_photos(dataset / "daisy", folders.photos, 3)
    secret = folders.outside / "roses"
    add_photos(secret, folders.root / "flowers" / "roses", 3)
    if linked == "class folder":
        (dataset / "roses").symlink_to(secret, target_is_directory=True)
    else:
        (dataset / "roses").mkdir()
        for photo in secret.iterdir():
            (dataset / "roses" / photo.name).symlink_to(photo)

    locs, _ = rejection(client, with_dataset(folders, dataset))

    assert locs == [("body", "dataset", "path")]
    assert store.list_searches(limit=10, offset=0, owner=None).total == 0


def test_only_valid_submissions_reach_the_queue(
    client: TestClient, store: Store, folders: Folders
) -> None:
    first = submit(client, search_body(folders.root / "flowers"))["id"]
    for case, (make_body, loc) in REJECTED.items():
        assert rejection(client, make_body(folders))[0] == [loc], case
    last = submit(client, search_body(folders.root / "flowers", tuner={"max_trials": 2}))["id"]

    listed = client.get("/v1/searches").json()
    assert listed["total"] == 2
    assert {item["id"] for item in listed["items"]} == {first, last}
    assert queued_ids(store) == [first, last]


# Leaderboard --------------------------------------------------------------------------------


def epoch(val_accuracy: float, val_loss: float) -> dict[str, float]:
    return {
        "accuracy": round(val_accuracy + 0.05, 4),
        "loss": round(val_loss - 0.05, 4),
        "val_accuracy": val_accuracy,
        "val_loss": val_loss,
    }


# trial id -> (epochs, how it ended: None while running). t2 failed after its best epoch,
# t4 has not finished an epoch yet.
TRIALS: dict[str, tuple[list[dict[str, float]], TrialStatus | None]] = {
    "t0": ([epoch(0.4, 1.2), epoch(0.6, 0.6)], TrialStatus.COMPLETED),
    "t1": ([epoch(0.5, 1.0), epoch(0.8, 0.7)], TrialStatus.COMPLETED),
    "t2": ([epoch(0.95, 0.1)], TrialStatus.FAILED),
    "t3": ([epoch(0.7, 0.5)], None),
    "t4": ([], None),
}


def params_of(trial_id: str) -> int:
    return 1000 * (int(trial_id[1:]) + 1)


def run_trials(store: Store, lease: SlotLease, objective: str) -> None:
    """Play TRIALS into the store the way a worker reports them."""
    for trial_id in TRIALS:
        store.start_trial(lease, trial_id, {"conv_blocks": 2, "trial": trial_id})
    for trial_id, (epochs, end) in TRIALS.items():
        for number, metrics in enumerate(epochs):
            store.record_epoch(
                lease,
                trial_id,
                epoch=number,
                metrics=metrics,
                score=metrics[objective],
                params=params_of(trial_id),
                seconds=1.5 * (number + 1),
            )
        if end is not None:
            error = "ResourceExhaustedError: out of memory" if end == TrialStatus.FAILED else None
            score = epochs[-1][objective]
            store.finish_trial(lease, trial_id, status=end, score=score, seconds=9.0, error=error)


def running_search(client: TestClient, store: Store, data_root: Path, objective: str) -> SlotLease:
    """A search submitted over the API, a slot of a worker in it, with no trials yet."""
    search_id = submit(client, {**search_body(data_root / "flowers"), "objective": objective})["id"]
    lease = join(store, "worker-1")
    assert lease.search_id == search_id
    return lease


@pytest.mark.parametrize(
    ("objective", "order", "best"),
    [
        ("val_accuracy", ["t1", "t3", "t0", "t2", "t4"], "t1"),
        ("val_loss", ["t3", "t0", "t1", "t2", "t4"], "t0"),
    ],
)
def test_leaderboard_ranks_by_objective(
    client: TestClient,
    store: Store,
    data_root: Path,
    objective: str,
    order: list[str],
    best: str,
) -> None:
    lease = running_search(client, store, data_root, objective)
    run_trials(store, lease, objective)

    response = client.get(f"/v1/searches/{lease.search_id}/leaderboard")

    assert response.status_code == 200
    board = response.json()
    assert board["search_id"] == lease.search_id
    assert board["objective"] == objective
    rows = board["trials"]
    assert [row["trial_id"] for row in rows] == order
    assert [row["rank"] for row in rows] == [1, 2, 3, None, None]
    for row in rows:
        epochs, end = TRIALS[row["trial_id"]]
        assert row["history"] == epochs
        assert row["epochs"] == len(epochs)
        assert row["status"] == (end or TrialStatus.RUNNING).value
        assert row["params"] == (params_of(row["trial_id"]) if epochs else None)
        assert row["score"] == (epochs[-1][objective] if epochs else None)
        assert row["hyperparameters"] == {"conv_blocks": 2, "trial": row["trial_id"]}
        assert (row["finished_at"] is None) == (end is None)
    assert rows[3]["error"].startswith("ResourceExhaustedError")

    search = client.get(f"/v1/searches/{lease.search_id}").json()
    assert search["status"] == "running"
    assert search["trials_done"] == 3
    assert search["best_trial"]["trial_id"] == best
    assert search["best_trial"]["rank"] == 1
    assert search["best_trial"]["score"] == TRIALS[best][0][-1][objective]
    assert search["best_trial"]["history"] == TRIALS[best][0]


def test_leaderboard_of_a_queued_search_is_empty(client: TestClient, data_root: Path) -> None:
    search_id = submit(client, search_body(data_root / "flowers"))["id"]

    board = client.get(f"/v1/searches/{search_id}/leaderboard").json()

    assert board == {"search_id": search_id, "objective": "val_accuracy", "trials": []}


# Cancel -------------------------------------------------------------------------------------


def cancel(client: TestClient, search_id: str) -> Response:
    return client.post(f"/v1/searches/{search_id}/cancel")


def test_cancel_queued_search_takes_it_off_the_queue(
    client: TestClient, store: Store, data_root: Path
) -> None:
    search_id = submit(client, search_body(data_root / "flowers"))["id"]

    response = cancel(client, search_id)

    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] is not None
    assert client.get(f"/v1/searches/{search_id}").json()["status"] == "cancelled"
    assert store.join_next("worker-1", hostname="h", lease_seconds=10) is None


def test_cancel_running_search_asks_its_worker_to_stop(
    client: TestClient, store: Store, data_root: Path
) -> None:
    lease = running_search(client, store, data_root, "val_accuracy")
    assert store.renew_slot(lease, 10).cancel_requested is False

    response = cancel(client, lease.search_id)

    assert response.status_code == 202
    assert response.json()["status"] == "running"
    assert response.json()["cancel_requested"] is True
    assert store.renew_slot(lease, 10).cancel_requested is True


@pytest.mark.parametrize("final", [SearchStatus.SUCCEEDED, SearchStatus.FAILED])
def test_cancel_finished_search_conflicts(
    client: TestClient, store: Store, data_root: Path, final: SearchStatus
) -> None:
    lease = running_search(client, store, data_root, "val_accuracy")
    store.finish_search(finish_trials(store, lease), final)

    response = cancel(client, lease.search_id)

    assert response.status_code == 409
    assert final.value in response.json()["detail"]
    search = client.get(f"/v1/searches/{lease.search_id}").json()
    assert (search["status"], search["cancel_requested"]) == (final.value, False)


# Unknown and malformed ids ------------------------------------------------------------------

ENDPOINTS = [
    ("GET", "/v1/searches/{id}"),
    ("GET", "/v1/searches/{id}/leaderboard"),
    ("GET", "/v1/searches/{id}/models"),
    ("POST", "/v1/searches/{id}/cancel"),
    ("POST", "/v1/searches/{id}/extend"),
    ("GET", "/v1/searches/{id}/models/1/summary"),
    ("GET", "/v1/searches/{id}/models/1/savedmodel"),
    ("GET", "/v1/searches/{id}/models/1/keras"),
]


def call_each_endpoint(client: TestClient, search_id: str) -> dict[str, int]:
    """The status code of every per-search endpoint for ``search_id``."""
    return {
        f"{method} {path}": client.request(method, path.replace("{id}", search_id)).status_code
        for method, path in ENDPOINTS
    }


def test_unknown_search_is_404_everywhere(client: TestClient) -> None:
    codes = call_each_endpoint(client, uuid.uuid4().hex)

    assert codes == dict.fromkeys(codes, 404)


@pytest.mark.parametrize("bad_id", ["abc", "..%2F..", "%2E%2E", "A" * 32, "0" * 33, "g" * 32])
def test_malformed_search_id_is_never_served(client: TestClient, bad_id: str) -> None:
    codes = call_each_endpoint(client, bad_id)

    assert set(codes.values()) <= {404, 422}, codes
    assert client.get("/v1/searches").json()["total"] == 0


def test_models_of_a_search_without_exports(client: TestClient, data_root: Path) -> None:
    search_id = submit(client, search_body(data_root / "flowers"))["id"]

    assert client.get(f"/v1/searches/{search_id}/models").json() == {
        "search_id": search_id,
        "models": [],
    }
    assert client.get(f"/v1/searches/{search_id}/models/1/keras").status_code == 404
    rank_zero = client.get(f"/v1/searches/{search_id}/models/0/summary")
    assert error_locs(rank_zero) == [("path", "rank")]


# Service endpoints --------------------------------------------------------------------------


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_openapi_lists_the_search_paths(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    assert {
        "/v1/searches",
        "/v1/searches/{search_id}",
        "/v1/searches/{search_id}/leaderboard",
        "/v1/searches/{search_id}/cancel",
        "/v1/searches/{search_id}/extend",
        "/v1/searches/{search_id}/models",
        "/v1/searches/{search_id}/models/{rank}/summary",
    } <= set(paths)
    assert set(paths["/v1/searches"]) == {"get", "post"}


def test_workers_lists_registered_workers(
    client_as: ClientFactory, store: Store, data_root: Path
) -> None:
    admin = client_as("ops", admin=True)
    assert admin.get("/v1/workers").json() == {"items": []}

    store.register_worker("worker-1", hostname="gpu-box", pid=4242, backend="jax", slots=2)
    search_id = submit(admin, search_body(data_root / "flowers"))["id"]
    lease = join(store, "worker-1")
    gpu = {"platform": "gpu", "replicas": 1}
    store.record_run_context(lease, accelerator=gpu, precision="float32", dataset_info={})
    store.start_trial(lease, "0", {})

    (worker,) = admin.get("/v1/workers").json()["items"]
    assert (worker["id"], worker["hostname"], worker["pid"]) == ("worker-1", "gpu-box", 4242)
    assert (worker["backend"], worker["stopped_at"]) == ("jax", None)
    assert (worker["slots"], worker["accelerator"]) == (2, gpu)
    assert worker["current_trials"] == [{"search_id": search_id, "trial_id": "0"}]


def test_idempotency_key_replays_the_same_search(client: TestClient, data_root: Path) -> None:
    body = search_body(data_root / "flowers")
    headers = {"Idempotency-Key": "submit-42"}
    first = client.post("/v1/searches", json=body, headers=headers)
    again = client.post("/v1/searches", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = search_body(data_root / "flowers", tuner={"max_trials": 2})
    conflict = client.post("/v1/searches", json=other, headers=headers)
    assert conflict.status_code == 409 and "Idempotency-Key" in conflict.json()["detail"]
    fresh = client.post("/v1/searches", json=body, headers={"Idempotency-Key": "submit-43"})
    assert fresh.status_code == 201 and fresh.json()["id"] != first.json()["id"]
    assert client.get("/v1/searches").json()["total"] == 2


def test_idempotency_key_compares_the_body_as_sent(client: TestClient, data_root: Path) -> None:
    body = search_body(data_root / "flowers")
    headers = {"Idempotency-Key": "retry-me", "Content-Type": "application/json"}
    first = client.post("/v1/searches", content=json.dumps(body), headers=headers)
    # A retry serialised by another client library: other key order, other spacing.
    reordered = json.dumps(dict(reversed(body.items())), indent=2)
    again = client.post("/v1/searches", content=reordered, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    # The same search spelled with a default written out is another request for the key: the
    # key stands for the body the client sent, not for what the server made of it.
    spelled = {**body, "objective": "val_accuracy"}
    conflict = client.post("/v1/searches", content=json.dumps(spelled), headers=headers)
    assert conflict.status_code == 409


def test_api_threads_bound_the_routes_thread_pool(settings: Settings, store: Store) -> None:
    app = create_app(settings.model_copy(update={"api_threads": 3}), store)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        limiter = client.portal.call(anyio.to_thread.current_default_thread_limiter)
        assert limiter.total_tokens == 3


def test_a_seed_beyond_what_the_random_generators_take_is_refused(
    client: TestClient, data_root: Path
) -> None:
    locs, _ = rejection(client, search_body(data_root / "flowers", tuner={"seed": 2**32}))
    assert locs == [("body", "tuner", "seed")]

    submit(client, search_body(data_root / "flowers", tuner={"seed": 2**32 - 1}))


def test_a_body_with_only_a_long_budget_plans_trials_within_the_cap(
    client: TestClient, data_root: Path
) -> None:
    body = {"dataset": {"path": str(data_root / "flowers")}, "budget": {"seconds": 4 * 3600}}

    created = submit(client, body)

    assert created["spec"]["tuner"]["algorithm"] == "asha"
    assert created["trials_planned"] <= 100  # NAS_LIMIT_MAX_TRIALS' default
