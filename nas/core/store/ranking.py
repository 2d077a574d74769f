"""Ordering trials by the search objective."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from nas.core.store.records import TrialRecord, TrialStatus


def objective_is_maximized(objective: str) -> bool:
    """Accuracies grow, losses shrink."""
    return objective.endswith("accuracy")


def _rankable(trial: TrialRecord) -> bool:
    return trial.score is not None and trial.status != TrialStatus.FAILED


def leaderboard(
    trials: Iterable[TrialRecord], objective: str
) -> list[tuple[int | None, TrialRecord]]:
    """Scored trials best first with their rank from 1, then unranked ones (failed, or
    before their first epoch) in the order of their ids."""
    trials = list(trials)
    sign = -1.0 if objective_is_maximized(objective) else 1.0
    scored = sorted(
        filter(_rankable, trials), key=lambda trial: (sign * (trial.score or 0.0), trial.trial_id)
    )
    unscored = sorted((t for t in trials if not _rankable(t)), key=lambda t: t.trial_id)
    return [(rank, trial) for rank, trial in enumerate(scored, start=1)] + [
        (None, trial) for trial in unscored
    ]


def best_completed(trials: Iterable[TrialRecord], objective: str) -> TrialRecord | None:
    """The best trial that finished, if any."""
    completed = [trial for trial in trials if trial.status == TrialStatus.COMPLETED]
    ranked = leaderboard(completed, objective)
    return ranked[0][1] if ranked and ranked[0][0] is not None else None


def best_score(history: Iterable[Mapping[str, float]], objective: str) -> float | None:
    """The best finite value of ``objective`` over a trial's epochs, if any."""
    values = [
        value
        for epoch in history
        if (value := epoch.get(objective)) is not None and math.isfinite(value)
    ]
    if not values:
        return None
    return max(values) if objective_is_maximized(objective) else min(values)
