"""Each tuner through the real service (HTTP API, worker process, real photos), seeds, patience."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from nas.cli.launcher import settings_env, start_nas, stop_process
from nas.core.settings import Settings
from nas.core.specs import SearchSpec, hyperband_trials
from nas.core.store import Store
from tests.support.factories import search_body, submit
from tests.support.flowers import copy_flowers_slice
from tests.support.live import cli_token, live_api, wait_for_status

SMALL_V2 = {
    "version": 2,
    "hyperparameters": {
        "conv_blocks": {"min": 2, "max": 3},
        "base_filters": {"values": [16, 24]},
        "filter_growth": {"fixed": 1.5},
        "head": {"values": ["gap", "gap_dense"]},
        "dense_units": {"fixed": 64},
    },
}


def tiny_search(photos: Path, **tuner: Any) -> dict[str, Any]:
    """A search of 32 px photos in a small corner of version 2 of the codelab space."""
    return search_body(
        photos, space=SMALL_V2, tuner={"epochs": 1, "batch_size": 16, **tuner}, export_top_k=1
    )


def run_searches(
    settings: Settings, tmp_path: Path, bodies: list[dict[str, Any]]
) -> tuple[httpx.Client, list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """Submit ``bodies``, let one worker run them; each search and its trials by id."""
    logs = tmp_path / "logs"
    logs.mkdir()
    token = cli_token(settings, "tuners")
    with live_api(settings, logs, token) as api:
        ids = [submit(api, body)["id"] for body in bodies]
        worker = start_nas(["worker"], settings_env(settings), logs / "worker.log")
        try:
            searches = [
                wait_for_status(api, search_id, {"succeeded", "failed", "cancelled"}, 600)
                for search_id in ids
            ]
        finally:
            assert stop_process(worker) == 0
        for search in searches:
            assert search["status"] == "succeeded", (logs / "worker.log").read_text()[-4000:]
        trials = [
            sorted(
                api.get(f"/v1/searches/{search_id}/leaderboard").json()["trials"],
                key=lambda trial: trial["trial_id"],
            )
            for search_id in ids
        ]
        return api, searches, trials


@pytest.fixture
def photos(settings: Settings, store: Store) -> Path:
    """Eight photos of each class in the data root, on a migrated database."""
    return copy_flowers_slice(settings.data_roots[0] / "tuner-flowers", per_class=8)


def sqlite_only(database_url: str) -> None:
    if database_url.startswith("postgresql"):
        pytest.skip("the tuners do not depend on the database; SQLite covers them")


@pytest.mark.slow
@pytest.mark.parametrize(
    "tuner",
    [
        {"algorithm": "random", "max_trials": 2},
        {"algorithm": "bayesian", "max_trials": 3, "initial_points": 2},
        {"algorithm": "hyperband", "epochs": 2, "hyperband_factor": 2},
    ],
    ids=["random", "bayesian", "hyperband"],
)
def test_each_tuner_runs_a_tiny_search_end_to_end(
    database_url: str, settings: Settings, photos: Path, tmp_path: Path, tuner: dict[str, Any]
) -> None:
    sqlite_only(database_url)

    _, (search,), (trials,) = run_searches(settings, tmp_path, [tiny_search(photos, **tuner)])

    planned = (
        hyperband_trials(tuner["epochs"], tuner["hyperband_factor"])
        if tuner["algorithm"] == "hyperband"
        else tuner["max_trials"]
    )
    assert search["trials_planned"] == planned
    assert 1 <= search["trials_done"] <= planned  # hyperband may end when its brackets do
    completed = [trial for trial in trials if trial["status"] == "completed"]
    assert completed and all(trial["score"] is not None for trial in completed)
    for trial in completed:
        values = trial["hyperparameters"]
        assert values["conv_blocks"] in (2, 3) and values["base_filters"] in (16, 24)
        assert values["filter_growth"] == 1.5
    if tuner["algorithm"] == "hyperband":
        assert max(trial["epochs"] for trial in completed) == 2
        assert {trial["hyperparameters"]["tuner/epochs"] for trial in completed} <= {1, 2}


@pytest.mark.slow
def test_the_same_seed_tries_the_same_hyperparameters_in_the_same_order(
    database_url: str, settings: Settings, photos: Path, tmp_path: Path
) -> None:
    sqlite_only(database_url)
    # Without warm start: the second search would try the first one's best configuration.
    options = {"algorithm": "random", "max_trials": 3, "warm_start": False}
    seeded = tiny_search(photos, seed=11, **options)

    _, _, trials = run_searches(
        settings, tmp_path, [seeded, seeded, tiny_search(photos, seed=12, **options)]
    )

    first, again, other = ([trial["hyperparameters"] for trial in run] for run in trials)
    assert len(first) == 3 and first == again
    assert other != first


def test_patience_stops_trials_early_on_the_objective() -> None:
    from nas.worker.pruning import early_stopping

    def spec(**tuner: Any) -> SearchSpec:
        return SearchSpec.model_validate(
            {"dataset": {"path": "/data"}, "objective": "val_loss", "tuner": tuner}
        )

    (default,) = early_stopping(spec(), {})
    (patient,) = early_stopping(spec(patience=2), {})

    assert (default.monitor, default.mode, default.patience) == ("val_loss", "min", 5)
    assert patient.patience == 2
    assert early_stopping(spec(patience=0), {}) == early_stopping(spec(patience=None), {}) == []
