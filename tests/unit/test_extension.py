"""An extension's arithmetic on made-up searches: what it adds to the spec and the plan, what
it records the search had spent, the budget clock its next run gets, and what `nas watch` shows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nas.cli.console import elapsed_and_remaining
from nas.core.extension import ExtensionRequest, extend, extension_refusal
from nas.core.settings import Settings
from nas.core.specs import SearchSpec
from nas.core.store import EndedBy, SearchRecord, SearchStatus
from nas.worker.search import search_clock

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SETTINGS = Settings()


def ended(
    *, ran: float, budget: int | None, ended_by: EndedBy, tuner: dict[str, Any] | None = None
) -> SearchRecord:
    """A search that ran ``ran`` seconds from its first claim at START, and ended."""
    body: dict[str, Any] = {"dataset": {"path": "/data"}, "tuner": tuner or {"max_trials": 4}}
    if budget is not None:
        body["budget"] = {"seconds": budget}
    return SearchRecord(
        id="a" * 32,
        owner="alice",
        status=SearchStatus.SUCCEEDED,
        spec=SearchSpec.model_validate(body).model_dump(mode="json"),
        trials_planned=4,
        trials_done=4,
        best_trial=None,
        created_at=START,
        started_at=START,
        finished_at=START + timedelta(seconds=ran),
        worker_id=None,
        attempt=1,
        lease_expires_at=None,
        cancel_requested=False,
        accelerator=None,
        precision=None,
        dataset_info=None,
        error=None,
        attempts=(),
        ended_by=ended_by.value,
        wall_seconds=ran,
        resumed_at=START,
    )


def extended_and_resumed(search: SearchRecord, request: ExtensionRequest) -> SearchRecord:
    """``search`` extended a day after it ended and claimed again just now."""
    now = datetime.now(UTC)
    made = extend(search, request, SETTINGS, now - timedelta(days=1))
    return replace(
        search,
        status=SearchStatus.RUNNING,
        spec=made.spec.model_dump(mode="json"),
        trials_planned=made.trials_planned,
        finished_at=None,
        resumed_at=now,
        extensions=(*search.extensions, made.extension),
    )


def clock_of(search: SearchRecord) -> tuple[float | None, float]:
    clock = search_clock(search, SearchSpec.model_validate(search.spec))
    return clock.seconds, clock.remaining()


def test_a_search_ended_by_its_budget_gets_the_seconds_added_however_long_it_idled() -> None:
    # Its export ran 10 s past its 60 s budget; the overrun is not taken from the extension.
    search = ended(ran=70, budget=60, ended_by=EndedBy.BUDGET)

    resumed = extended_and_resumed(
        search, ExtensionRequest.model_validate({"budget": {"seconds": 30}})
    )

    (extension,) = resumed.extensions
    assert (extension.budget_spent, extension.wall_seconds) == (60, 70)
    assert resumed.spec["budget"] == {"seconds": 90}
    seconds, remaining = clock_of(resumed)
    assert seconds == 30
    assert 29 < remaining <= 30


def test_a_budget_left_unspent_carries_over_to_the_next_run() -> None:
    search = ended(ran=40, budget=100, ended_by=EndedBy.MAX_TRIALS)

    resumed = extended_and_resumed(search, ExtensionRequest(max_trials=2))

    assert resumed.extensions[0].budget_spent == 40
    assert resumed.spec["tuner"]["max_trials"] == 6
    assert clock_of(resumed)[0] == 60


def test_extensions_add_up_over_runs() -> None:
    first_run = ended(ran=50, budget=60, ended_by=EndedBy.BUDGET)
    resumed = extended_and_resumed(
        first_run, ExtensionRequest.model_validate({"budget": {"seconds": 40}})
    )
    # Its second run spent 30 s of its 40, then the user cancelled it.
    second_run = replace(
        resumed,
        status=SearchStatus.CANCELLED,
        ended_by=EndedBy.CANCELLED.value,
        finished_at=resumed.resumed_at + timedelta(seconds=30),
    )

    again = extended_and_resumed(second_run, ExtensionRequest(max_trials=1))

    second = again.extensions[-1]
    assert (second.budget_spent, second.wall_seconds) == (80, 80)
    assert (second.ended_as, second.ended_by, second.attempts) == ("cancelled", "cancelled", 1)
    assert again.spec["budget"] == {"seconds": 100}
    assert clock_of(again)[0] == 20


def test_a_search_without_a_budget_keeps_none() -> None:
    resumed = extended_and_resumed(
        ended(ran=40, budget=None, ended_by=EndedBy.MAX_TRIALS), ExtensionRequest(max_trials=1)
    )

    assert resumed.extensions[0].budget_spent == 0
    assert clock_of(resumed) == (None, float("inf"))


def test_asha_adds_configurations_and_plans_their_promotions() -> None:
    search = ended(
        ran=40, budget=None, ended_by=EndedBy.MAX_TRIALS, tuner={"epochs": 3, "max_trials": 2}
    )

    made = extend(search, ExtensionRequest(max_trials=2), SETTINGS, START)

    # Four configurations over rungs of 1 and 3 epochs: one promotion besides.
    assert made.spec.tuner.algorithm == "asha"
    assert (made.spec.tuner.max_trials, made.trials_planned) == (4, 5)


@pytest.mark.parametrize(
    ("status", "refused"),
    [
        (SearchStatus.QUEUED, True),
        (SearchStatus.RUNNING, True),
        (SearchStatus.SUCCEEDED, False),
        (SearchStatus.CANCELLED, False),
        (SearchStatus.FAILED, False),  # its four trials all failed: no best trial
    ],
)
def test_which_searches_may_be_extended(status: SearchStatus, refused: bool) -> None:
    search = replace(ended(ran=1, budget=None, ended_by=EndedBy.MAX_TRIALS), status=status)

    assert (extension_refusal(search) is not None) == refused


def test_a_failed_search_none_of_whose_trials_ran_may_not_be_extended() -> None:
    search = replace(
        ended(ran=1, budget=None, ended_by=EndedBy.ERROR),
        status=SearchStatus.FAILED,
        trials_done=0,
        error="DatasetError: no photos",
    )

    refusal = extension_refusal(search)

    assert refusal is not None and "DatasetError" in refusal


@pytest.mark.parametrize(("status", "ran"), [("queued", None), ("running", 10.0)])
def test_nas_watch_counts_the_runs_of_an_extended_search_not_its_idle_time(
    status: str, ran: float | None
) -> None:
    now = datetime.now(UTC)
    search = {
        "status": status,
        "spec": {"budget": {"seconds": 90}},
        "started_at": (now - timedelta(days=1)).isoformat(),
        "resumed_at": None if ran is None else (now - timedelta(seconds=ran)).isoformat(),
        "finished_at": None,
        "trials_done": 0,
        "trials_planned": 6,
        "extensions": [{"wall_seconds": 70.0, "budget_spent": 60.0}],
    }

    elapsed, remaining = elapsed_and_remaining(search)

    assert elapsed == pytest.approx(70 + (ran or 0), abs=1)
    assert remaining == pytest.approx(30 - (ran or 0), abs=1)
