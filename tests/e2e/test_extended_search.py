"""More trials for a finished search, end to end: real HTTP API, a real worker process, real
training on real photos, and ``nas extend`` as the real executable."""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from nas.cli.launcher import NAS_COMMAND, settings_env, start_nas, stop_process
from nas.core.settings import Settings
from nas.core.store import DataStepState, Store
from tests.support.flowers import copy_flowers_slice
from tests.support.live import cli_token, live_api, wait_for_status

pytestmark = pytest.mark.slow

#: What the extension must leave as it was of a trial that ran before it.
KEPT = ("trial_id", "status", "score", "hyperparameters", "epochs", "history", "started_at")


def configuration(trial: dict[str, Any]) -> tuple:
    """A trial's architecture and training values, without the tuner's bookkeeping."""
    values = trial["hyperparameters"].items()
    return tuple(sorted((name, value) for name, value in values if not name.startswith("tuner/")))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_extended_search_continues_its_tuner_and_exports_again(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    photos = copy_flowers_slice(settings.data_roots[0] / "extend-flowers", per_class=8)
    logs = tmp_path / "logs"
    token = cli_token(settings, "extender")
    with live_api(settings, logs, token) as api:
        submitted = api.post(
            "/v1/searches",
            json={
                "dataset": {"path": str(photos), "image_size": 32},
                "space": {"max_conv_blocks": 2, "filters": [8, 16]},
                # asha, the default: one rung at one epoch, every configuration a trial.
                "tuner": {"max_trials": 2, "epochs": 1, "batch_size": 16, "seed": 5},
                "export_top_k": 2,
                # The models in score order (the defaults get no head start).
                "defaults_margin": 0,
            },
        )
        assert submitted.status_code == 201, submitted.text
        search_id = submitted.json()["id"]
        env = settings_env(settings) | {"NAS_URL": str(api.base_url), "NAS_TOKEN": token}

        def nas_extend(*args: str) -> subprocess.CompletedProcess[str]:
            command = [*NAS_COMMAND, "extend", search_id, *args]
            return subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=120, check=False
            )

        nothing, too_early = nas_extend(), nas_extend("--trials", "2")
        assert (nothing.returncode, nothing.stderr) == (
            1,
            "error: give --trials, --seconds or both\n",
        )
        assert too_early.returncode == 1
        assert "search is queued" in too_early.stderr and "(409)" in too_early.stderr
        worker = start_nas(["worker"], settings_env(settings), logs / "worker.log")
        try:
            first = wait_for_status(api, search_id, {"succeeded", "failed"}, 300)
            assert first["status"] == "succeeded", (logs / "worker.log").read_text()[-4000:]
            board = api.get(f"/v1/searches/{search_id}/leaderboard").json()["trials"]
            models = api.get(f"/v1/searches/{search_id}/models").json()["models"]
            # The extension trains on the data prepared for the first run: not on the photos.
            photos.rename(tmp_path / "photos-gone")

            extended = nas_extend("--trials", "2")
            assert extended.returncode == 0, extended.stderr
            assert f"search {search_id} queued, 4 trials planned" in extended.stdout

            done = wait_for_status(api, search_id, {"succeeded", "failed"}, 300)
            assert worker.poll() is None
        finally:
            assert stop_process(worker) == 0
        assert done["status"] == "succeeded", (logs / "worker.log").read_text()[-4000:]
        after = api.get(f"/v1/searches/{search_id}/leaderboard").json()["trials"]
        models_after = api.get(f"/v1/searches/{search_id}/models").json()["models"]

    assert done["trials_done"] == done["trials_planned"] == 4
    step = store.get_data_step(search_id)
    assert step is not None and (step.state, step.token) == (DataStepState.READY, 1)
    assert done["spec"]["tuner"]["max_trials"] == 4
    assert (done["ended_by"], len(done["extensions"])) == ("max_trials", 1)
    assert [attempt["outcome"] for attempt in done["attempts"]] == ["succeeded", "succeeded"]
    # Each trial ran once: the first two as they were, two new ones with their own ids and
    # configurations, started after the extension.
    assert len(after) == 4 and all(trial["status"] == "completed" for trial in after)
    assert len({trial["trial_id"] for trial in after}) == 4
    assert len({configuration(trial) for trial in after}) == 4
    by_id = {trial["trial_id"]: trial for trial in after}
    for trial in board:
        assert {key: by_id[trial["trial_id"]][key] for key in KEPT} == {
            key: trial[key] for key in KEPT
        }
    extended_at = datetime.fromisoformat(done["extensions"][0]["extended_at"])
    new = [trial for trial in after if trial["trial_id"] not in {t["trial_id"] for t in board}]
    assert len(new) == 2
    assert all(datetime.fromisoformat(trial["started_at"]) > extended_at for trial in new)
    # The best were trained to the end and exported again, over the four trials.
    assert done["final_training"] and done["final_training"][0]["error"] is None
    assert [model["rank"] for model in models_after] == [1, 2]
    assert models_after[0]["trial_id"] == after[0]["trial_id"]
    for before, again in zip(models, models_after, strict=True):
        assert datetime.fromisoformat(again["created_at"]) > datetime.fromisoformat(
            before["created_at"]
        )
    # Its wall-clock seconds are those of its two runs, not the idle time between them.
    started, finished = (datetime.fromisoformat(done[key]) for key in ("started_at", "finished_at"))
    assert done["wall_seconds"] < (finished - started).total_seconds()
