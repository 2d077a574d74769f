"""A time budget and the chance-level stop, end to end: real HTTP API, a real worker process,
real training on real photos."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nas.cli.launcher import settings_env, start_nas, stop_process
from nas.core.settings import Settings
from nas.core.specs import ASHA_REDUCTION_FACTOR, asha_trials
from nas.core.store import Store
from tests.support.flowers import FLOWERS, copy_flowers_slice
from tests.support.live import cli_token, live_api, wait_for_status

pytestmark = pytest.mark.slow

#: The smallest models of version 2: a trial's epoch on a few photos takes well under a second.
TINY_SPACE = {
    "version": 2,
    "hyperparameters": {
        "conv_blocks": {"fixed": 2},
        "base_filters": {"fixed": 16},
        "filter_growth": {"fixed": 1.0},
        "augmentation": {"fixed": False},
    },
}
BUDGET_SECONDS = 45
#: The most seconds from one trial's end to the next one's first batch on a loaded machine.
BETWEEN_TRIALS_SECONDS = 10


def one_photo_in_every_class(dest: Path, classes: int, copies: int) -> Path:
    """A dataset whose classes hold copies of the same photo: no model can beat chance on it."""
    photo = sorted((FLOWERS / "daisy").glob("*.jpg"))[0]
    for number in range(classes):
        folder = dest / f"class{number}"
        folder.mkdir(parents=True, exist_ok=True)
        for copy in range(copies):
            shutil.copy2(photo, folder / f"{copy}.jpg")
    return dest


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("parallel_trials", [1, 2])
def test_a_budget_ends_the_search_on_time_and_a_hopeless_trial_stops_early(
    settings: Settings, store: Store, tmp_path: Path, parallel_trials: int
) -> None:
    settings = settings.model_copy(update={"parallel_trials": parallel_trials})
    root = settings.data_roots[0]
    photos = copy_flowers_slice(root / "budget-flowers", per_class=8)
    hopeless = one_photo_in_every_class(root / "budget-hopeless", classes=3, copies=10)
    logs = tmp_path / "logs"
    logs.mkdir()
    with live_api(settings, logs, cli_token(settings, "budget")) as api:
        at_chance = api.post(
            "/v1/searches",
            json={
                "dataset": {"path": str(hopeless), "image_size": 32},
                "space": TINY_SPACE,
                "tuner": {
                    "max_trials": 1,
                    "epochs": 10,
                    "patience": 0,
                    "min_epochs_before_pruning": 2,
                },
            },
        )
        assert at_chance.status_code == 201, at_chance.text
        budgeted = api.post(
            "/v1/searches",
            json={
                "dataset": {"path": str(photos), "image_size": 32},
                "space": TINY_SPACE,
                "budget": {"seconds": BUDGET_SECONDS},
                # 20 trials of 100 epochs: only the budget can end this search.
                "tuner": {
                    "algorithm": "random",
                    "max_trials": 20,
                    "epochs": 100,
                    "patience": 0,
                    "pruning": False,
                    "batch_size": 8,
                },
                # The whole budget to the trials: its deadline is what this test watches.
                "final_top_k": 0,
            },
        )
        assert budgeted.status_code == 201, budgeted.text
        assert budgeted.json()["spec"]["budget"] == {"seconds": BUDGET_SECONDS}
        only_a_budget = api.post(
            "/v1/searches",
            json={"dataset": {"path": str(photos)}, "budget": {"seconds": 1200}},
        )
        assert only_a_budget.status_code == 201, only_a_budget.text
        planned = only_a_budget.json()["spec"]["tuner"]
        assert (planned["algorithm"], planned["max_trials"], planned["epochs"]) == ("asha", 40, 20)
        # 40 configurations at the first rung, and the promotions of ASHA's later rungs.
        assert only_a_budget.json()["trials_planned"] == asha_trials(40, 20, ASHA_REDUCTION_FACTOR)
        cancelled = api.post(f"/v1/searches/{only_a_budget.json()['id']}/cancel")
        assert cancelled.status_code == 202, cancelled.text
        assert cancelled.json()["ended_by"] == "cancelled"

        worker = start_nas(["worker"], settings_env(settings), logs / "worker.log")
        try:
            stopped = wait_for_status(api, at_chance.json()["id"], {"succeeded", "failed"}, 300)
            done = wait_for_status(api, budgeted.json()["id"], {"succeeded", "failed"}, 300)
        finally:
            assert stop_process(worker) == 0
        worker_log = (logs / "worker.log").read_text()[-4000:]

        assert stopped["status"] == "succeeded", worker_log
        assert stopped["ended_by"] == "max_trials"
        (trial,) = api.get(f"/v1/searches/{stopped['id']}/leaderboard").json()["trials"]
        assert trial["epochs"] == 2, "stopped after min_epochs_before_pruning, not 10"
        assert trial["stop_reason"].startswith("chance level: best val_accuracy 0.33"), trial
        csv = api.get(f"/v1/searches/{stopped['id']}/leaderboard.csv").text
        assert "stop_reason" in csv.splitlines()[0] and "chance level" in csv

        assert done["status"] == "succeeded", worker_log
        assert done["ended_by"] == "budget"
        board = api.get(f"/v1/searches/{done['id']}/leaderboard").json()["trials"]
        started = datetime.fromisoformat(done["started_at"])
        last_end = max(datetime.fromisoformat(trial["finished_at"]) for trial in board)
        longest_epoch = max(epoch["epoch_seconds"] for trial in board for epoch in trial["history"])
        overrun = (last_end - started).total_seconds() - BUDGET_SECONDS
        # The deadline is checked at batch boundaries: a trial ends within the epoch it is in
        # (plus that epoch's validation and the store's writes).
        assert overrun <= longest_epoch + 2.0, (overrun, longest_epoch)
        assert len(board) < 20
        last = max(board, key=lambda trial: trial["finished_at"])
        if last["epochs"] < 100:
            assert last["stop_reason"] == f"the search's budget of {BUDGET_SECONDS} s ran out"
        else:
            # The clock ran out between trials: the last one trained its 100 epochs just before
            # the deadline and none began after it.
            assert (last_end - started).total_seconds() >= BUDGET_SECONDS - BETWEEN_TRIALS_SECONDS
        assert done["training_seconds"] == pytest.approx(
            sum(trial["seconds"] for trial in board), abs=0.01
        )
        assert done["wall_seconds"] >= BUDGET_SECONDS - 1
        if parallel_trials == 1:  # trials in parallel train more seconds than pass
            assert done["wall_seconds"] >= done["training_seconds"]


@pytest.mark.parametrize(
    ("budget", "field"),
    [
        ({"seconds": 5}, ["body", "budget", "seconds"]),
        ({"seconds": "soon"}, ["body", "budget", "seconds"]),
        ({"minutes": 20}, ["body", "budget", "seconds"]),
        ({"seconds": 60, "minutes": 1}, ["body", "budget", "minutes"]),
    ],
)
def test_a_bad_budget_is_a_422_naming_its_field(
    client: TestClient, data_root: Path, budget: dict, field: list[str]
) -> None:
    response = client.post(
        "/v1/searches",
        json={"dataset": {"path": str(data_root / "flowers")}, "budget": budget},
    )
    assert response.status_code == 422
    assert field in [error["loc"] for error in response.json()["detail"]]
