"""When a trial stops before its last epoch: the median stopping rule, the chance-level stop,
and early stopping whose patience does not judge a cosine schedule on its start.

The rules are plain functions of per-epoch histories (lists of metric dicts, as the store
keeps them), so a test can predict which trial they stop.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras

from nas.core.specs import SearchSpec
from nas.worker.budget import BudgetClock

History = Sequence[Mapping[str, float]]
#: Earlier trials the median rule needs before it judges (with one, it would stop every
#: trial worse than the first).
MEDIAN_MIN_TRIALS = 2
#: A trial whose best accuracy is at most 1/classes plus this has learned nothing yet.
CHANCE_MARGIN = 0.05
#: Algorithms the median rule applies to; Hyperband schedules its own short trials.
MEDIAN_RULE_ALGORITHMS = frozenset({"random", "bayesian"})


def best_by_epoch(history: History, metric: str, epochs: int, *, maximize: bool) -> float | None:
    """The best finite value of ``metric`` in the first ``epochs`` epochs, None if none."""
    values = [epoch.get(metric) for epoch in history[:epochs]]
    finite = [value for value in values if value is not None and math.isfinite(value)]
    if not finite:
        return None
    return max(finite) if maximize else min(finite)


def median_stop(
    history: History,
    earlier: Sequence[History],
    objective: str,
    *,
    maximize: bool,
    min_epochs: int,
) -> str | None:
    """Why the median stopping rule stops this trial now, or None to let it go on.

    A trial stops at epoch k (from ``min_epochs`` on) when its best objective by epoch k is
    worse than the median of the earlier trials' best by epoch k (those that reached k).
    """
    epochs = len(history)
    if epochs < min_epochs:
        return None
    own = best_by_epoch(history, objective, epochs, maximize=maximize)
    others = [
        best
        for trial in earlier
        if len(trial) >= epochs
        and (best := best_by_epoch(trial, objective, epochs, maximize=maximize)) is not None
    ]
    if own is None or len(others) < MEDIAN_MIN_TRIALS:
        return None
    median = statistics.median(others)
    if (own < median) if maximize else (own > median):
        return (
            f"median rule: best {objective} {own:.4g} by epoch {epochs}, below the median "
            f"{median:.4g} of {len(others)} earlier trials"
        )
    return None


def chance_stop(history: History, *, classes: int, min_epochs: int) -> str | None:
    """Why a trial still at chance accuracy after ``min_epochs`` epochs stops, or None."""
    epochs = len(history)
    metric = "val_accuracy" if any("val_accuracy" in epoch for epoch in history) else "accuracy"
    best = best_by_epoch(history, metric, epochs, maximize=True)
    if epochs < min_epochs or best is None:
        return None
    ceiling = 1 / classes + CHANCE_MARGIN
    if best > ceiling:
        return None
    return (
        f"chance level: best {metric} {best:.4g} after {epochs} epochs, at most {ceiling:.4g} "
        f"(1/{classes} classes + {CHANCE_MARGIN:g})"
    )


def early_stopping(spec: SearchSpec, hyperparameters: Mapping[str, Any]) -> list[Any]:
    """Stops a trial whose objective has not improved for ``tuner.patience`` epochs.

    Under a cosine schedule the learning rate is still high in the first half of the trial
    and the objective plateaus there by design: patience only counts from the midpoint.
    """
    if not spec.tuner.patience:
        return []
    cosine = hyperparameters.get("lr_schedule") == "cosine"
    return [
        keras.callbacks.EarlyStopping(
            monitor=spec.objective,
            mode="max" if spec.maximize else "min",
            patience=spec.tuner.patience,
            start_from_epoch=spec.tuner.epochs // 2 if cosine else 0,
        )
    ]


@dataclass(frozen=True)
class StopRules:
    """What may stop a trial before its last epoch: the search's budget and its pruners."""

    spec: SearchSpec
    clock: BudgetClock
    classes: int

    @property
    def budget_reason(self) -> str:
        """The stop reason of a trial the budget ended."""
        return self.clock.stop_reason()

    @property
    def patience_reason(self) -> str:
        """The stop reason of a trial early stopping ended."""
        tuner = self.spec.tuner
        return f"patience: no better {self.spec.objective} for {tuner.patience} epochs"

    @property
    def min_epochs(self) -> int:
        """Epochs a trial trains before a pruner may stop it."""
        return self.spec.tuner.min_epochs_before_pruning

    @property
    def needs_earlier_trials(self) -> bool:
        """Whether :meth:`pruning_reason` compares with the earlier trials' histories."""
        return self.spec.tuner.pruning and self.spec.tuner.algorithm in MEDIAN_RULE_ALGORITHMS

    def pruning_reason(self, history: History, earlier: Sequence[History]) -> str | None:
        """Why the spec's pruners stop a trial with ``history`` now, or None."""
        if not self.spec.tuner.pruning or len(history) < self.min_epochs:
            return None
        reason = chance_stop(history, classes=self.classes, min_epochs=self.min_epochs)
        if reason is None and self.needs_earlier_trials:
            reason = median_stop(
                history,
                earlier,
                self.spec.objective,
                maximize=self.spec.maximize,
                min_epochs=self.min_epochs,
            )
        return reason
