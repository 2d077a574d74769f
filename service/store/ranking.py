"""Ordering trials by the search objective."""

from __future__ import annotations

from collections.abc import Iterable

from service.store.records import TrialRecord, TrialStatus


def objective_is_maximized(objective: str) -> bool:
    """Accuracies grow, losses shrink."""
    return objective.endswith("accuracy")


def rank_trials(trials: Iterable[TrialRecord], objective: str) -> list[TrialRecord]:
    """Scored trials best first, then unscored ones (failed, or before their first epoch)."""
    trials = list(trials)
    sign = -1.0 if objective_is_maximized(objective) else 1.0
    scored = sorted(
        (trial for trial in trials if trial.score is not None and trial.status != TrialStatus.FAILED),
        key=lambda trial: (sign * trial.score, trial.trial_id),
    )
    chosen = {trial.trial_id for trial in scored}
    unscored = sorted(
        (trial for trial in trials if trial.trial_id not in chosen), key=lambda t: t.trial_id
    )
    return scored + unscored


def best_completed(trials: Iterable[TrialRecord], objective: str) -> TrialRecord | None:
    """The best trial that finished, if any."""
    completed = [trial for trial in trials if trial.status == TrialStatus.COMPLETED]
    ranked = rank_trials(completed, objective)
    return ranked[0] if ranked and ranked[0].score is not None else None
