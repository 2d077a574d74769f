"""Good first: the space's defaults are every search's first trial, the best configurations of
the same owner's earlier searches of the same photos come next (real HTTP API, real worker,
real photos), and the default algorithm (ASHA) promotes a trial and resumes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nas.cli.launcher import settings_env, start_nas, stop_process
from nas.core.artifacts import SearchArtifacts
from nas.core.settings import Settings
from nas.core.spaces.codelab_v2 import HYPERPARAMETERS
from nas.core.store import Store
from tests.support.flowers import copy_flowers_slice
from tests.support.live import cli_token, live_api, wait_for_status
from tests.support.owners import bearer

#: A corner of the space far from its defaults: the configuration alice's first search finds.
PINNED = {
    "conv_blocks": 2,
    "base_filters": 16,
    "filter_growth": 1.5,
    "head": "gap_dense",
    "dense_units": 64,
    "dropout": 0.1,
    "learning_rate": 0.005,
    "lr_schedule": "constant",
}


def space_defaults() -> dict[str, Any]:
    """The default configuration of version 2 of the codelab space (its active values)."""
    defaults = {item.name: item.default for item in HYPERPARAMETERS}
    return {
        item.name: item.default
        for item in HYPERPARAMETERS
        if item.active_when is None or defaults[item.active_when[0]] in item.active_when[1]
    }


def searched(trial: dict[str, Any]) -> dict[str, Any]:
    """A trial's configuration, without the tuners' bookkeeping values."""
    return {k: v for k, v in trial["hyperparameters"].items() if not k.startswith("tuner/")}


def body(photos: Path, *, space: dict[str, Any] | None = None, **tuner: Any) -> dict[str, Any]:
    return {
        "dataset": {"path": str(photos), "image_size": 32},
        "space": space or {"version": 2},
        "tuner": {"epochs": 1, "batch_size": 16, "seed": 3, **tuner},
        "export_top_k": 1,
    }


def run_in_order(
    settings: Settings, tmp_path: Path, submissions: list[tuple[str, dict[str, Any]]]
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Submit each (owner, body) in turn; one worker runs them in that order. Each search
    with its trials in the order they started."""
    logs = tmp_path / "logs"
    logs.mkdir()
    tokens = {owner: cli_token(settings, owner) for owner, _ in submissions}
    with live_api(settings, logs, next(iter(tokens.values()))) as api:
        ids = []
        for owner, submitted in submissions:
            response = api.post("/v1/searches", json=submitted, headers=bearer(tokens[owner]))
            assert response.status_code == 201, response.text
            ids.append((owner, response.json()["id"]))
        worker = start_nas(["worker"], settings_env(settings), logs / "worker.log")
        try:
            done = []
            for owner, search_id in ids:
                api.headers.update(bearer(tokens[owner]))
                search = wait_for_status(api, search_id, {"succeeded", "failed"}, 600)
                assert search["status"] == "succeeded", (logs / "worker.log").read_text()[-4000:]
                board = api.get(f"/v1/searches/{search_id}/leaderboard").json()["trials"]
                done.append((search, sorted(board, key=lambda trial: trial["trial_id"])))
        finally:
            assert stop_process(worker) == 0
    return done


@pytest.fixture
def photos(settings: Settings, store: Store) -> Path:
    """Six photos of each class in the data root, on a migrated database."""
    return copy_flowers_slice(settings.data_roots[0] / "warm-flowers", per_class=6)


def sqlite_only(database_url: str) -> None:
    if database_url.startswith("postgresql"):
        pytest.skip("the oracles do not depend on the database; SQLite covers them")


@pytest.mark.slow
def test_the_first_trial_is_the_defaults_and_warm_start_seeds_the_next(
    database_url: str, settings: Settings, photos: Path, tmp_path: Path
) -> None:
    sqlite_only(database_url)
    pinned_space = {
        "version": 2,
        "hyperparameters": {name: {"fixed": value} for name, value in PINNED.items()},
    }

    (first, (found,)), (again, trials), (other, others) = run_in_order(
        settings,
        tmp_path,
        [
            ("alice", body(photos, space=pinned_space, algorithm="random", max_trials=1)),
            ("alice", body(photos, algorithm="random", max_trials=3)),
            ("bob", body(photos, algorithm="random", max_trials=2)),
        ],
    )

    fingerprint = first["dataset"]["fingerprint"]
    assert fingerprint and again["dataset"]["fingerprint"] == fingerprint
    assert searched(found).items() >= PINNED.items()
    # Alice's second search: the defaults, then her first search's best, then new draws.
    assert [searched(trial) for trial in trials[:2]] == [space_defaults(), searched(found)]
    assert searched(trials[2]) not in (space_defaults(), searched(found))
    # Bob has never searched these photos: the defaults, then a draw of his own.
    assert searched(others[0]) == space_defaults()
    assert searched(others[1]) != searched(found)
    assert other["dataset"]["fingerprint"] == fingerprint


@pytest.mark.slow
def test_asha_is_the_default_and_resumes_a_promoted_trial_from_its_checkpoint(
    database_url: str, settings: Settings, photos: Path, tmp_path: Path
) -> None:
    sqlite_only(database_url)
    # Rungs at 1 and 3 epochs: three configurations at 1 epoch, the best resumed to 3.
    submitted = body(photos, max_trials=3, epochs=3, patience=0)

    ((search, trials),) = run_in_order(settings, tmp_path, [("carol", submitted)])

    assert search["spec"]["tuner"]["algorithm"] == "asha"
    # Few photos: the models are capped at the floors that keep the default model.
    assert search["dataset"]["model_bounds"] == {
        "max_params": 1_000_000,
        "max_flops": 60_000 * 32 * 32,
        "scaled_to_data": True,
    }
    assert search["trials_planned"] == 4 and len(trials) == 4
    assert all(trial["status"] == "completed" for trial in trials)
    first_rung, (promoted,) = trials[:3], trials[3:]
    assert searched(first_rung[0]) == space_defaults()
    assert all(trial["epochs"] == 1 for trial in first_rung)
    best = max(first_rung, key=lambda trial: trial["score"])
    values = promoted["hyperparameters"]
    assert values["tuner/trial_id"] == best["trial_id"]
    assert (values["tuner/initial_epoch"], values["tuner/epochs"]) == (1, 3)
    assert searched(promoted) == searched(best)
    # Resumed at epoch 1: it trained epochs 1 and 2 only, from the best trial's checkpoint.
    assert promoted["epochs"] == 2
    tuner_dir = SearchArtifacts(settings.artifacts_dir, search["id"]).tuner_dir
    assert (tuner_dir / f"trial_{best['trial_id']}" / "checkpoint.weights.h5").is_file()
