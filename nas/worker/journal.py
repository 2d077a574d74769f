"""Writes what the tuner does to the store as it happens: trials, epochs, outcomes."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from nas.core.store import SlotLease, Store, TrialRecord, TrialStatus
from nas.core.store.ranking import objective_is_maximized

log = logging.getLogger(__name__)


class TrialJournal:
    """A slot's one writer of trial progress, fenced by the slot's lease."""

    def __init__(self, store: Store, lease: SlotLease, objective: str) -> None:
        self._store = store
        self._lease = lease
        self._objective = objective
        self._maximize = objective_is_maximized(objective)
        self._started: dict[str, float] = {}
        self._best: dict[str, float] = {}
        self._kept: dict[str, tuple[dict[str, float], ...]] = {}
        self._stop_reasons: dict[str, str] = {}
        self.cancel_requested = False

    def ensure_held(self) -> None:
        """Raise LeaseLostError if the slot lost its lease (its trial went to another)."""
        self._store.check_slot(self._lease)

    def should_yield(self) -> bool:
        """Whether the slot should leave between two trials for a search that waits."""
        return self._store.slot_should_yield(self._lease)

    def trial_started(self, trial_id: str, hyperparameters: dict[str, Any]) -> None:
        self._started[trial_id] = time.monotonic()
        self._best.pop(trial_id, None)
        self._kept.pop(trial_id, None)
        self._stop_reasons.pop(trial_id, None)
        self._store.start_trial(self._lease, trial_id, _plain(hyperparameters))
        log.info("trial %s started: %s", trial_id, hyperparameters)

    def training_begins(self, trial_id: str, epoch: int) -> TrialRecord:
        """The trial trains from its epoch ``epoch`` (from 0) on: past 0, it resumed from the
        checkpoint of an earlier run, whose epochs before it the store keeps (any others are
        dropped). Returns the trial as kept; its best score and seconds go on from there."""
        kept = self._store.resume_trial(self._lease, trial_id, epochs=epoch)
        self._kept[trial_id] = kept.history
        if kept.score is None:
            self._best.pop(trial_id, None)
        else:
            self._best[trial_id] = kept.score
        self._started[trial_id] = self._started.get(trial_id, time.monotonic()) - kept.seconds
        if kept.history:
            log.info(
                "trial %s resumes at epoch %d from the checkpoint of an earlier run",
                trial_id,
                len(kept.history),
            )
        return kept

    def kept_epochs(self, trial_id: str) -> tuple[dict[str, float], ...]:
        """The epochs of an earlier run the trial's training resumed after (none if it
        trained from scratch)."""
        return self._kept.get(trial_id, ())

    def epoch_ended(
        self, trial_id: str, epoch: int, logs: dict[str, Any], params: int
    ) -> dict[str, float]:
        """Record an epoch of a trial; returns its metrics as recorded."""
        metrics = {name: float(value) for name, value in logs.items() if _is_number(value)}
        value = metrics.get(self._objective)
        if value is not None and math.isfinite(value):
            best = self._best.get(trial_id)
            if best is None or (value > best if self._maximize else value < best):
                self._best[trial_id] = value
        state = self._store.record_epoch(
            self._lease,
            trial_id,
            epoch=epoch,
            metrics=metrics,
            score=self._best.get(trial_id),
            params=params,
            seconds=self._elapsed(trial_id),
        )
        self.cancel_requested = self.cancel_requested or state.cancel_requested
        return metrics

    def earlier_histories(self, trial_id: str) -> list[tuple[dict[str, float], ...]]:
        """The per-epoch histories of the search's trials that started before ``trial_id``
        (finished or still running in another slot)."""
        trials = self._store.list_trials(self._lease.search_id)
        ids = [trial.trial_id for trial in trials]
        before = trials[: ids.index(trial_id)] if trial_id in ids else trials
        return [trial.history for trial in before if trial.history]

    def trial_stopping(self, trial_id: str, reason: str) -> None:
        """Note why a trial stops before its last epoch; recorded when it ends."""
        self._stop_reasons.setdefault(trial_id, reason)
        log.info("trial %s stops early: %s", trial_id, reason)

    def trial_ended(self, trial_id: str, *, completed: bool, error: str | None) -> None:
        status = TrialStatus.COMPLETED if completed else TrialStatus.FAILED
        score = self._best.get(trial_id)
        self._store.finish_trial(
            self._lease,
            trial_id,
            status=status,
            score=score,
            seconds=self._elapsed(trial_id),
            error=error,
            stop_reason=self._stop_reasons.pop(trial_id, None),
        )
        log.info("trial %s %s, %s=%s", trial_id, status.value, self._objective, score)

    def _elapsed(self, trial_id: str) -> float:
        return time.monotonic() - self._started.get(trial_id, time.monotonic())


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe hyperparameter values (numpy scalars become Python ones)."""
    return {key: value.item() if hasattr(value, "item") else value for key, value in values.items()}
