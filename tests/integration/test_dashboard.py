"""The dashboard's page and assets (open, self-contained) and the leaderboard as CSV, on a
real store of each kind."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from fastapi.testclient import TestClient

from nas.api.dashboard import STATIC_DIR
from nas.core.store import Store, TrialStatus
from tests.support.factories import search_body, submit
from tests.support.leases import join
from tests.support.owners import ClientFactory

# A hyperparameter value that needs every kind of CSV quoting.
AWKWARD = 'gap, "wide"\nsecond line'


def running_search_with_trials(client: TestClient, store: Store, data_root: Path) -> str:
    """A search of the client's owner with three trials: two scored (one with a hyperparameter
    the other lacks, as conditional ones are), one failed before its first epoch."""
    search_id = submit(client, search_body(data_root / "flowers"))["id"]
    lease = join(store, "worker-csv")
    assert lease.search_id == search_id
    trials = {
        "1": ({"conv_blocks": 2, "head": AWKWARD}, 0.5, 1_234),
        "2": ({"conv_blocks": 3, "head": "gap", "filters_2": 64}, 0.75, 56_789),
    }
    for trial_id, (hyperparameters, score, params) in trials.items():
        store.start_trial(lease, trial_id, hyperparameters)
        store.record_epoch(
            lease,
            trial_id,
            epoch=0,
            metrics={"val_accuracy": score, "val_loss": 1.0},
            score=score,
            params=params,
            seconds=2.5,
        )
    store.start_trial(lease, "3", {"conv_blocks": 4})
    store.finish_trial(lease, "3", status=TrialStatus.FAILED, score=None, seconds=0.1, error="OOM")
    return search_id


def test_leaderboard_csv_has_a_row_per_ranked_trial_and_a_column_per_hyperparameter(
    client: TestClient, store: Store, data_root: Path
) -> None:
    search_id = running_search_with_trials(client, store, data_root)

    response = client.get(f"/v1/searches/{search_id}/leaderboard.csv")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="{search_id}-leaderboard.csv"'
    )
    reader = csv.DictReader(io.StringIO(response.text, newline=""))
    assert reader.fieldnames == [
        "rank",
        "trial_id",
        "status",
        "score",
        "test_accuracy",
        "final_epochs",
        "params",
        "epochs",
        "seconds",
        "stop_reason",
        "worker_id",
        "hostname",
        "hp_conv_blocks",
        "hp_filters_2",
        "hp_head",
    ]
    rows = list(reader)
    assert [(row["rank"], row["trial_id"], row["status"]) for row in rows] == [
        ("1", "2", "running"),
        ("2", "1", "running"),
        ("", "3", "failed"),
    ]
    assert rows[0] | {"hp_head": None} == {
        "rank": "1",
        "trial_id": "2",
        "status": "running",
        "score": "0.75",
        "test_accuracy": "",
        "final_epochs": "",
        "params": "56789",
        "epochs": "1",
        "seconds": "2.5",
        "stop_reason": "",
        "worker_id": "worker-csv",
        "hostname": "test-host",
        "hp_conv_blocks": "3",
        "hp_filters_2": "64",
        "hp_head": None,
    }
    assert rows[1]["hp_head"] == AWKWARD
    assert rows[1]["hp_filters_2"] == ""
    assert rows[2]["score"] == rows[2]["params"] == ""

    board = client.get(f"/v1/searches/{search_id}/leaderboard").json()["trials"]
    assert [row["trial_id"] for row in rows] == [trial["trial_id"] for trial in board]


def test_leaderboard_csv_of_another_owner_is_not_found(
    client: TestClient, store: Store, data_root: Path, client_as: ClientFactory
) -> None:
    search_id = running_search_with_trials(client, store, data_root)

    foreign = client_as("mallory").get(f"/v1/searches/{search_id}/leaderboard.csv")
    anonymous = client_as(None).get(f"/v1/searches/{search_id}/leaderboard.csv")

    assert foreign.status_code == 404
    assert foreign.json() == {"detail": f"no search {search_id}"}
    assert anonymous.status_code == 401
    assert (
        client_as("admin", admin=True)
        .get(f"/v1/searches/{search_id}/leaderboard.csv")
        .text.startswith("rank,trial_id,")
    )


def test_the_page_and_its_assets_are_open_and_load_nothing_from_elsewhere(
    client_as: ClientFactory,
) -> None:
    stranger = client_as(None)

    page = stranger.get("/")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    referenced = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert "static/app.js" in referenced
    assert "static/vendor/chart.umd.min.js" in referenced
    for reference in referenced:
        assert not re.match(r"^(https?:)?//", reference), reference
        if reference.startswith("static/"):
            asset = stranger.get(f"/{reference}")
            assert asset.status_code == 200, reference
            assert asset.content == (STATIC_DIR / reference.removeprefix("static/")).read_bytes()
    chart = stranger.get("/static/vendor/chart.umd.min.js").text
    assert chart.startswith("/*!\n * Chart.js v4.")
    assert "MIT License" in stranger.get("/static/vendor/chart.js-LICENSE.md").text
    assert stranger.get("/static/missing.js").status_code == 404
    assert stranger.get("/v1/searches").status_code == 401  # the data stays closed
