"""More budget for a search that ended: the body of ``POST /v1/searches/{id}/extend`` and
what it makes of the search, whose tuner then continues where it stopped.

A search may be extended once it succeeded or was cancelled, or failed with every trial
that ran failed (more configurations may fare better); one that failed otherwise (its
dataset, its workers) would fail the same way again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nas.core.errors import InvalidRequestError, field_problem
from nas.core.settings import Settings
from nas.core.specs import MOST_BUDGET_SECONDS, MOST_TRIALS, BudgetSpec, SearchSpec
from nas.core.store import EndedBy, Extension, SearchRecord, SearchStatus


class BudgetExtension(BaseModel):
    """Seconds added to a search's time budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seconds: int = Field(..., ge=1, le=MOST_BUDGET_SECONDS, description="Added to budget.seconds.")


class ExtensionRequest(BaseModel):
    """The body of ``POST /v1/searches/{id}/extend``: more trials, more seconds, or both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_trials: int | None = Field(
        None,
        ge=1,
        le=MOST_TRIALS,
        description="Trials added to tuner.max_trials (asha: configurations, each starting at "
        "the lowest rung, promotions besides).",
    )
    budget: BudgetExtension | None = Field(
        None, description="Seconds added to the time budget of a search that has one."
    )

    @model_validator(mode="after")
    def _adds_something(self) -> ExtensionRequest:
        if self.max_trials is None and self.budget is None:
            raise ValueError("give max_trials, budget.seconds or both")
        return self


@dataclass(frozen=True)
class ExtendedSearch:
    """What an extension makes of a search: its new spec and plan, and the record of it."""

    spec: SearchSpec
    trials_planned: int
    extension: Extension


def extension_refusal(search: SearchRecord) -> str | None:
    """Why no request can extend ``search`` now (a conflict with its state), or None."""
    if not search.status.terminal:
        return f"search is {search.status.value}: only a search that ended can be extended"
    if search.status == SearchStatus.FAILED and not _every_trial_failed(search):
        return (
            f"search failed ({search.error}): only a failed search whose every trial failed "
            "can be extended"
        )
    hyperband = search.spec.get("tuner", {}).get("algorithm") == "hyperband"
    if hyperband and search.ended_by == EndedBy.MAX_TRIALS:
        return "search ran its whole Hyperband iteration: a hyperband search has no trials to add"
    return None


def extend(
    search: SearchRecord, request: ExtensionRequest, settings: Settings, now: datetime
) -> ExtendedSearch:
    """``search`` with the request's trials and seconds added, and the record of the
    extension made at ``now``; a 422 naming each field of the request the search cannot take.
    ``search`` must have passed :func:`extension_refusal`."""
    spec = SearchSpec.model_validate(search.spec)
    problems = _trial_problems(search, spec, request, settings.limit_max_trials)
    problems += _budget_problems(search, spec, request)
    if problems:
        raise InvalidRequestError(problems)
    update: dict[str, Any] = {}
    if request.max_trials is not None:
        more_trials = {"max_trials": spec.tuner.max_trials + request.max_trials}
        update["tuner"] = spec.tuner.model_copy(update=more_trials)
    if request.budget is not None and spec.budget is not None:
        update["budget"] = BudgetSpec(seconds=spec.budget.seconds + request.budget.seconds)
    extended = spec.model_copy(update=update)
    return ExtendedSearch(
        spec=extended,
        trials_planned=extended.tuner.planned_trials(),
        extension=_extension(search, spec, request, now),
    )


def _every_trial_failed(search: SearchRecord) -> bool:
    # Trials done are the completed and the failed ones; the best is a completed one.
    return search.trials_done > 0 and search.best_trial is None


def _trial_problems(
    search: SearchRecord, spec: SearchSpec, request: ExtensionRequest, limit: int
) -> list[dict[str, Any]]:
    if request.max_trials is None:
        if search.ended_by == EndedBy.MAX_TRIALS:
            return [
                field_problem(
                    ("max_trials",),
                    "the search ran all its trials: more seconds alone would run none",
                    None,
                )
            ]
        return []
    if spec.tuner.algorithm == "hyperband":
        message = "a hyperband search runs the trials its iteration plans: give it seconds only"
        return [field_problem(("max_trials",), message, request.max_trials)]
    total, most = spec.tuner.max_trials + request.max_trials, min(limit, MOST_TRIALS)
    if total > most:
        message = (
            f"the search would try {total} configurations in all, over this service's "
            f"{most} (NAS_LIMIT_MAX_TRIALS)"
        )
        return [field_problem(("max_trials",), message, request.max_trials)]
    return []


def _budget_problems(
    search: SearchRecord, spec: SearchSpec, request: ExtensionRequest
) -> list[dict[str, Any]]:
    if request.budget is None:
        if search.ended_by == EndedBy.BUDGET:
            message = "the search's time budget is spent: more trials alone would run none"
            return [field_problem(("budget", "seconds"), message, None)]
        return []
    if spec.budget is None:
        message = "the search has no time budget to add seconds to"
        return [field_problem(("budget",), message, request.budget.model_dump())]
    total = spec.budget.seconds + request.budget.seconds
    if total > MOST_BUDGET_SECONDS:
        message = f"the budget would be {total} s in all, over the most a search may have"
        return [field_problem(("budget", "seconds"), message, request.budget.seconds)]
    return []


def _extension(
    search: SearchRecord, spec: SearchSpec, request: ExtensionRequest, now: datetime
) -> Extension:
    """The record of the extension: what it adds, and what the search had spent by then."""
    ran = (
        (search.finished_at - search.resumed_at).total_seconds()
        if search.finished_at and search.resumed_at
        else 0.0
    )
    before = search.extensions[-1].wall_seconds if search.extensions else 0.0
    # A run past its budget (the export after the deadline) takes nothing from the seconds
    # the extension adds.
    budget_spent = (
        0.0
        if spec.budget is None
        else min(float(spec.budget.seconds), search.budget_spent_before_resuming + ran)
    )
    return Extension(
        extended_at=now,
        max_trials=request.max_trials,
        seconds=None if request.budget is None else request.budget.seconds,
        ended_as=search.status.value,
        ended_by=search.ended_by,
        wall_seconds=before + ran,
        budget_spent=budget_spent,
        attempts=search.attempt,
    )
