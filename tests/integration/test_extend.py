"""``POST /v1/searches/{id}/extend`` on a real store (SQLite file and PostgreSQL): which
searches may be extended, what a refusal names, what an extension changes and keeps, and how
the store counts a run after it (its attempts, its wall-clock seconds)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from nas.core import extension
from nas.core.extension import ExtensionRequest
from nas.core.settings import Settings
from nas.core.store import (
    EndedBy,
    SearchStatus,
    SlotLease,
    StaleSearchError,
    Store,
    TrialStatus,
)
from tests.support.factories import Body, error_locs, search_body, submit
from tests.support.leases import finish_trials, join
from tests.support.owners import ClientFactory

#: Two random trials of one epoch: the search the tests below end and extend.
TWO_TRIALS = {"algorithm": "random", "max_trials": 2, "epochs": 1}


def post_extend(
    client: TestClient, search_id: str, body: Any, headers: dict[str, str] | None = None
) -> Response:
    return client.post(f"/v1/searches/{search_id}/extend", json=body, headers=headers)


def claim(store: Store, search_id: str) -> SlotLease:
    lease = join(store, "worker-1")
    assert lease.search_id == search_id
    return lease


def play_trial(store: Store, lease: SlotLease, trial_id: str, status: TrialStatus) -> None:
    """One trial of one epoch, reported the way a worker reports it."""
    store.start_trial(lease, trial_id, {"conv_blocks": 2})
    score = 0.5 if status == TrialStatus.COMPLETED else None
    metrics = {"val_accuracy": 0.5}
    store.record_epoch(
        lease, trial_id, epoch=0, metrics=metrics, score=score, params=100, seconds=1.0
    )
    error = None if status == TrialStatus.COMPLETED else "ResourceExhaustedError: out of memory"
    store.finish_trial(lease, trial_id, status=status, score=score, seconds=1.0, error=error)


def ended_search(
    client: TestClient,
    store: Store,
    data_root: Path,
    *,
    status: SearchStatus = SearchStatus.SUCCEEDED,
    ended_by: EndedBy | None = None,
    trials: TrialStatus | None = TrialStatus.COMPLETED,
    **body: Any,
) -> str:
    """A search submitted over the API, whose worker ran two trials (each ending as
    ``trials``; None: none ran) and ended it as ``status``."""
    search_id = submit(client, search_body(data_root / "flowers", tuner=TWO_TRIALS) | body)["id"]
    slot = claim(store, search_id)
    for trial_id in ("0", "1") if trials else ():
        play_trial(store, slot, trial_id, trials)
    error = None if status != SearchStatus.FAILED else "every trial failed"
    store.finish_search(finish_trials(store, slot), status, error=error, ended_by=ended_by)
    return search_id


# What an extension changes and keeps --------------------------------------------------------


def test_an_extended_search_is_queued_again_with_more_trials_and_its_trials_kept(
    client: TestClient, store: Store, data_root: Path
) -> None:
    search_id = ended_search(client, store, data_root)
    before = client.get(f"/v1/searches/{search_id}")
    board_before = client.get(f"/v1/searches/{search_id}/leaderboard").json()

    response = post_extend(client, search_id, {"max_trials": 3})

    assert response.status_code == 202, response.text
    search = response.json()
    assert search["status"] == "queued"
    assert search["spec"]["tuner"]["max_trials"] == 5
    assert search["trials_planned"] == 5
    assert search["trials_done"] == 2
    assert search["started_at"] == before.json()["started_at"]
    for cleared in ("finished_at", "ended_by", "error", "wall_seconds", "training_seconds"):
        assert search[cleared] is None, cleared
    assert search["resumed_at"] is None  # until a worker claims it
    (extension,) = search["extensions"]
    assert (extension["max_trials"], extension["seconds"]) == (3, None)
    assert (extension["ended_as"], extension["ended_by"]) == ("succeeded", "max_trials")
    assert extension["attempts"] == 1 and extension["budget_spent"] == 0.0
    assert 0 < extension["wall_seconds"] == before.json()["wall_seconds"]
    # Its trials are kept, and every representation of it is new.
    assert client.get(f"/v1/searches/{search_id}/leaderboard").json() == board_before
    revalidated = client.get(
        f"/v1/searches/{search_id}", headers={"If-None-Match": before.headers["etag"]}
    )
    assert revalidated.status_code == 200
    assert revalidated.headers["etag"] != before.headers["etag"]
    assert revalidated.json()["spec"]["tuner"]["max_trials"] == 5

    claim(store, search_id)
    claimed = store.get_search(search_id)
    assert claimed is not None and claimed.status == SearchStatus.RUNNING
    assert claimed.resumed_at is not None and claimed.started_at is not None
    assert claimed.resumed_at > claimed.started_at


def test_a_time_budget_is_raised_by_the_seconds_given(
    client: TestClient, store: Store, data_root: Path
) -> None:
    search_id = ended_search(
        client, store, data_root, ended_by=EndedBy.BUDGET, budget={"seconds": 60}
    )

    search = post_extend(client, search_id, {"budget": {"seconds": 30}}).json()

    assert search["spec"]["budget"] == {"seconds": 90}
    assert search["spec"]["tuner"]["max_trials"] == 2
    (extension,) = search["extensions"]
    assert (extension["max_trials"], extension["seconds"]) == (None, 30)
    # The run took a moment of its 60 seconds: the clock goes on from there.
    assert 0 < extension["budget_spent"] == pytest.approx(extension["wall_seconds"])


def test_a_cancelled_search_is_extended_without_its_cancel(
    client: TestClient, store: Store, data_root: Path
) -> None:
    search_id = submit(client, search_body(data_root / "flowers", tuner=TWO_TRIALS))["id"]
    slot = claim(store, search_id)
    play_trial(store, slot, "0", TrialStatus.COMPLETED)
    assert client.post(f"/v1/searches/{search_id}/cancel").json()["cancel_requested"] is True
    store.finish_search(finish_trials(store, slot), SearchStatus.CANCELLED)

    search = post_extend(client, search_id, {"max_trials": 1}).json()

    assert (search["status"], search["cancel_requested"]) == ("queued", False)
    assert search["extensions"][0]["ended_as"] == "cancelled"
    assert store.renew_slot(claim(store, search_id), 60).cancel_requested is False


def test_a_search_whose_every_trial_failed_may_be_extended(
    client: TestClient, store: Store, data_root: Path
) -> None:
    search_id = ended_search(
        client, store, data_root, status=SearchStatus.FAILED, trials=TrialStatus.FAILED
    )

    response = post_extend(client, search_id, {"max_trials": 2})

    assert response.status_code == 202, response.text
    assert (response.json()["status"], response.json()["error"]) == ("queued", None)


def test_each_extension_is_recorded_and_adds_up(
    client: TestClient, store: Store, data_root: Path
) -> None:
    search_id = ended_search(client, store, data_root)
    post_extend(client, search_id, {"max_trials": 1})
    slot = claim(store, search_id)
    play_trial(store, slot, "2", TrialStatus.COMPLETED)
    store.finish_search(finish_trials(store, slot), SearchStatus.SUCCEEDED)

    search = post_extend(client, search_id, {"max_trials": 2}).json()

    assert search["spec"]["tuner"]["max_trials"] == 5
    first, second = search["extensions"]
    assert (first["max_trials"], second["max_trials"]) == (1, 2)
    assert second["attempts"] == 2
    assert second["wall_seconds"] > first["wall_seconds"]


# The store's count of a run after an extension ----------------------------------------------


def test_an_extended_search_counts_its_lost_finishing_steps_anew(
    client: TestClient, store: Store, data_root: Path
) -> None:
    search_id = ended_search(client, store, data_root)
    post_extend(client, search_id, {"max_trials": 1})
    finish_trials(store, claim(store, search_id), lease_seconds=0)
    time.sleep(0.01)

    # The finishing step of its first run succeeded: this is the first lost in a row.
    assert store.reap_expired(max_attempts=2) == [search_id]
    search = store.get_search(search_id)
    assert search is not None and search.status == SearchStatus.RUNNING

    assert store.claim_finishing("worker-1", 0) is not None
    time.sleep(0.01)
    store.reap_expired(max_attempts=2)
    search = store.get_search(search_id)
    assert search is not None and search.status == SearchStatus.FAILED
    assert search.error == "the worker finishing the search stopped answering 2 times"


def test_the_wall_seconds_of_an_extended_search_leave_out_the_idle_time(
    client: TestClient, store: Store, data_root: Path
) -> None:
    search_id = ended_search(client, store, data_root)
    first_run = client.get(f"/v1/searches/{search_id}").json()["wall_seconds"]
    idle = 1.0
    time.sleep(idle)
    post_extend(client, search_id, {"max_trials": 1})
    slot = claim(store, search_id)
    play_trial(store, slot, "2", TrialStatus.COMPLETED)
    store.finish_search(finish_trials(store, slot), SearchStatus.SUCCEEDED)

    search = store.get_search(search_id)

    assert search is not None and search.wall_seconds is not None and search.resumed_at
    second_run = (search.finished_at - search.resumed_at).total_seconds()
    assert search.wall_seconds == pytest.approx(first_run + second_run)
    assert search.wall_seconds < idle


# Refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "locs"),
    [
        ({}, [("body",)]),
        ({"max_trials": 0}, [("body", "max_trials")]),
        ({"max_trials": "many"}, [("body", "max_trials")]),
        ({"max_trials": 2.5}, [("body", "max_trials")]),
        ({"max_trials": 1001}, [("body", "max_trials")]),
        ({"max_trials": 2, "epochs": 3}, [("body", "epochs")]),
        ({"budget": {"seconds": 0}}, [("body", "budget", "seconds")]),
        ({"budget": {"seconds": 30, "minutes": 1}}, [("body", "budget", "minutes")]),
        ({"budget": 30}, [("body", "budget")]),
        ([3], [("body",)]),
    ],
)
def test_a_malformed_body_is_refused_naming_the_field(
    client: TestClient, store: Store, data_root: Path, body: Any, locs: list[tuple]
) -> None:
    search_id = ended_search(client, store, data_root, budget={"seconds": 60})

    assert error_locs(post_extend(client, search_id, body)) == locs


@pytest.mark.parametrize(
    ("ended", "body", "loc", "words"),
    [
        # Over NAS_LIMIT_MAX_TRIALS (100) in all.
        ({}, {"max_trials": 99}, ("body", "max_trials"), "101 configurations"),
        ({}, {"max_trials": 1, "budget": {"seconds": 60}}, ("body", "budget"), "no time budget"),
        (
            {"budget": {"seconds": 60}, "ended_by": EndedBy.BUDGET},
            {"max_trials": 2},
            ("body", "budget", "seconds"),
            "budget is spent",
        ),
        (
            {"budget": {"seconds": 60}},
            {"budget": {"seconds": 60}},
            ("body", "max_trials"),
            "ran all its trials",
        ),
        (
            {"budget": {"seconds": 7 * 24 * 3600 - 10}},
            {"max_trials": 1, "budget": {"seconds": 11}},
            ("body", "budget", "seconds"),
            "over the most",
        ),
        (
            {
                "budget": {"seconds": 60},
                "ended_by": EndedBy.BUDGET,
                "tuner": {"algorithm": "hyperband", "epochs": 3},
            },
            {"max_trials": 2, "budget": {"seconds": 60}},
            ("body", "max_trials"),
            "hyperband",
        ),
    ],
)
def test_what_the_search_cannot_take_is_refused_naming_the_field(
    client: TestClient,
    store: Store,
    data_root: Path,
    ended: dict[str, Any],
    body: Body,
    loc: tuple[str, ...],
    words: str,
) -> None:
    ended = dict(ended)
    ended_by = ended.pop("ended_by", None)
    search_id = ended_search(client, store, data_root, ended_by=ended_by, **ended)
    before = store.get_search(search_id)

    response = post_extend(client, search_id, body)

    assert error_locs(response) == [loc]
    assert words in response.json()["detail"][0]["msg"]
    assert store.get_search(search_id) == before


def test_a_queued_or_running_search_conflicts(
    client: TestClient, store: Store, data_root: Path
) -> None:
    search_id = submit(client, search_body(data_root / "flowers", tuner=TWO_TRIALS))["id"]

    queued = post_extend(client, search_id, {"max_trials": 1})
    claim(store, search_id)
    running = post_extend(client, search_id, {"max_trials": 1})

    assert (queued.status_code, running.status_code) == (409, 409)
    assert "search is queued" in queued.json()["detail"]
    assert "search is running" in running.json()["detail"]
    search = store.get_search(search_id)
    assert search is not None and search.spec["tuner"]["max_trials"] == 2


def test_a_search_that_failed_for_another_reason_conflicts(
    client: TestClient, store: Store, data_root: Path
) -> None:
    search_id = submit(client, search_body(data_root / "flowers", tuner=TWO_TRIALS))["id"]
    store.fail_search(claim(store, search_id), "DatasetError: no photos in flowers")

    response = post_extend(client, search_id, {"max_trials": 1})

    assert response.status_code == 409
    assert "DatasetError" in response.json()["detail"]


def test_a_hyperband_search_that_ran_its_iteration_conflicts(
    client: TestClient, store: Store, data_root: Path
) -> None:
    hyperband = {"algorithm": "hyperband", "epochs": 3}
    search_id = ended_search(client, store, data_root, tuner=hyperband, budget={"seconds": 60})

    response = post_extend(client, search_id, {"budget": {"seconds": 60}})

    assert response.status_code == 409
    assert "Hyperband iteration" in response.json()["detail"]


def test_another_owners_search_or_none_is_404(
    client: TestClient, client_as: ClientFactory, store: Store, data_root: Path
) -> None:
    search_id = ended_search(client, store, data_root)

    foreign = post_extend(client_as("mallory"), search_id, {"max_trials": 1})
    missing = post_extend(client, "f" * 32, {"max_trials": 1})

    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["detail"] == f"no search {search_id}"
    admin = post_extend(client_as("root", admin=True), search_id, {"max_trials": 1})
    assert admin.status_code == 202


def test_a_full_queue_refuses_the_extension(
    client: TestClient, store: Store, data_root: Path
) -> None:
    search_id = ended_search(client, store, data_root)
    limit = client.app.state.settings.limit_queued_per_owner
    for _ in range(limit):
        submit(client, search_body(data_root / "flowers", tuner=TWO_TRIALS))

    response = post_extend(client, search_id, {"max_trials": 1})

    assert response.status_code == 429
    assert "NAS_LIMIT_QUEUED_PER_OWNER" in response.json()["detail"]


# Retries ------------------------------------------------------------------------------------


def test_a_retry_with_the_same_key_extends_once(
    client: TestClient, store: Store, data_root: Path
) -> None:
    search_id = ended_search(client, store, data_root)
    key = {"Idempotency-Key": "more-please"}

    first = post_extend(client, search_id, {"max_trials": 2}, headers=key)
    claim(store, search_id)  # a worker took it before the retry came
    again = post_extend(client, search_id, {"max_trials": 2}, headers=key)

    assert (first.status_code, again.status_code) == (202, 202)
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["status"] == "running"
    assert again.json()["spec"]["tuner"]["max_trials"] == 4
    assert len(again.json()["extensions"]) == 1
    other = post_extend(client, search_id, {"max_trials": 3}, headers=key)
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["detail"]


def test_a_retry_without_a_key_conflicts_rather_than_extend_twice(
    client: TestClient, store: Store, data_root: Path
) -> None:
    search_id = ended_search(client, store, data_root)

    assert post_extend(client, search_id, {"max_trials": 2}).status_code == 202
    assert post_extend(client, search_id, {"max_trials": 2}).status_code == 409

    search = store.get_search(search_id)
    assert search is not None and search.spec["tuner"]["max_trials"] == 4


def test_an_extension_judged_on_a_stale_read_is_refused(
    client: TestClient, store: Store, settings: Settings, data_root: Path
) -> None:
    search_id = ended_search(client, store, data_root)
    stale = store.get_search(search_id)
    assert stale is not None
    judged = extension.extend(stale, ExtensionRequest(max_trials=1), settings, datetime.now(UTC))
    # Another request extends it first, and it ends again.
    assert post_extend(client, search_id, {"max_trials": 1}).status_code == 202
    store.finish_search(finish_trials(store, claim(store, search_id)), SearchStatus.SUCCEEDED)

    with pytest.raises(StaleSearchError):
        store.extend_search(
            search_id,
            revision=stale.revision,
            spec=judged.spec.model_dump(mode="json"),
            trials_planned=judged.trials_planned,
            extension=judged.extension,
        )

    search = store.get_search(search_id)
    assert search is not None and search.spec["tuner"]["max_trials"] == 3
    assert len(search.extensions) == 1
