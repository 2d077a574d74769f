"""The clock a search's time budget runs on: wall-clock seconds from the start of the
search's current run, on the seconds of its budget left for that run.

The start is the store's ``resumed_at`` (set when a worker first takes a slot in the search,
or first takes one after an extension, and kept), so every process of a search (each slot of
each worker on any host, its finishing step) reads the same clock. An extended search's run
gets the seconds the extension added and those its earlier runs left; the idle time between
its runs is not counted.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

log = logging.getLogger(__name__)

#: The share of a time budget kept for training the best architectures to the end (when the
#: search trains any), at least: exploration stops handing out trials once the rest is spent.
FINAL_TRAINING_SHARE = 0.4
#: A final training trains at least this many times the epochs of the longest trial: one
#: more rung above a successive-halving search's top one, at its reduction factor. Where the
#: budget's epochs are dear (a slow device, big photos), the reserve grows to give it that,
#: since exploration judged on a few short trials cannot gain what the final model loses.
FINAL_EPOCHS_PER_TRIAL_EPOCHS = 3
#: ... up to this share of the budget: exploration keeps the rest, enough for the space's
#: defaults (its first trial) and a few others.
MOST_FINAL_TRAINING_SHARE = 0.9
#: What the final trainings leave of a budget for exporting and testing the models after them
#: (the export's own time is not known before it runs): this many of their epochs (the test
#: pass and the model's size grow with them), plus the seconds below for each exported model
#: (writing a SavedModel and a .keras file of a small convnet takes a few on a CPU). The test
#: pass over the held-out photos is a fraction of an epoch: it runs forward only.
EXPORT_RESERVE_EPOCHS = 1
EXPORT_RESERVE_SECONDS_PER_MODEL = 5.0
#: How often an exploration clock looks for the first trial's epoch time until it has it.
EPOCH_TIME_LOOK_SECONDS = 5.0


class BudgetClock(Protocol):
    """What stops trials for a time budget: its seconds (None: no budget), whether they are
    spent, and how a stopped trial's reason says so."""

    @property
    def seconds(self) -> float | None: ...

    def expired(self) -> bool: ...

    def stop_reason(self) -> str: ...


@dataclass(frozen=True)
class SearchClock:
    """How much of a search's budget is spent; ``seconds`` None is no budget."""

    started_at: datetime
    seconds: float | None

    def spent(self) -> float:
        """Wall-clock seconds since the run started."""
        return (datetime.now(UTC) - self.started_at).total_seconds()

    def remaining(self) -> float:
        """Seconds of the budget left (never below 0); infinite without a budget."""
        if self.seconds is None:
            return math.inf
        return max(0.0, self.seconds - self.spent())

    def expired(self) -> bool:
        """Whether the budget is spent: no new trial, and running ones stop."""
        return self.seconds is not None and self.spent() >= self.seconds

    def stop_reason(self) -> str:
        """The stop reason of a trial this clock ended."""
        return f"the search's budget of {self.seconds:g} s ran out"


def export_reserve(epoch_seconds: float | None, exported_models: int) -> float:
    """The seconds a budget keeps after the final trainings for exporting and testing
    ``exported_models`` models whose architectures' epochs take ``epoch_seconds`` (None: not
    known yet)."""
    return EXPORT_RESERVE_EPOCHS * (epoch_seconds or 0.0) + (
        EXPORT_RESERVE_SECONDS_PER_MODEL * exported_models
    )


def final_training_reserve(
    budget_seconds: float,
    *,
    final_epochs_needed: int,
    epoch_seconds: float | None,
    exported_models: int,
) -> float:
    """The share of a budget of ``budget_seconds`` kept for the final trainings and the export
    after them: :data:`FINAL_TRAINING_SHARE` of it to train, or more where that would not
    train ``final_epochs_needed`` epochs of ``epoch_seconds`` (None: not known yet), and the
    :func:`export_reserve` of ``exported_models``; up to :data:`MOST_FINAL_TRAINING_SHARE`."""
    training = FINAL_TRAINING_SHARE * budget_seconds
    if epoch_seconds is not None:
        training = max(training, final_epochs_needed * epoch_seconds)
    kept = training + export_reserve(epoch_seconds, exported_models)
    return min(kept / budget_seconds, MOST_FINAL_TRAINING_SHARE)


class ExplorationClock:
    """The clock exploration runs on: the search's, less the share of its budget kept for
    training the best architectures to the end (see :func:`final_training_reserve`).

    That share depends on how long the final training's epochs take, which the search's first
    trial tells (``epoch_seconds`` returns its epoch time scaled to the final training's
    photos, or None until it has timed epochs); until then the share is
    :data:`FINAL_TRAINING_SHARE` and the export's reserve. Every slot and the finishing step
    read the same first trial, so they agree on when exploration ends. ``expired`` is called
    at each batch: the epoch time is looked up at most every ``look_every_seconds``, and kept
    once found.
    """

    def __init__(
        self,
        clock: SearchClock,
        *,
        final_epochs_needed: int,
        exported_models: int,
        epoch_seconds: Callable[[], float | None],
        look_every_seconds: float = EPOCH_TIME_LOOK_SECONDS,
    ) -> None:
        self._clock = clock
        self._exported_models = exported_models
        self._look_every_seconds = look_every_seconds
        self._final_epochs_needed = final_epochs_needed
        self._look_up_epoch_seconds = epoch_seconds
        self._epoch_seconds: float | None = None
        self._next_look = 0.0

    @property
    def seconds(self) -> float | None:
        """The seconds exploration may run from the search's start; None without a budget."""
        budget = self._clock.seconds
        if budget is None:
            return None
        return budget * (1.0 - self.reserve())

    def reserve(self) -> float:
        """The share of the budget kept for the final trainings, as known now."""
        budget = self._clock.seconds
        if budget is None:
            return FINAL_TRAINING_SHARE
        found = False
        if self._epoch_seconds is None and time.monotonic() >= self._next_look:
            self._epoch_seconds = self._look_up_epoch_seconds()
            self._next_look = time.monotonic() + self._look_every_seconds
            found = self._epoch_seconds is not None
        reserve = final_training_reserve(
            budget,
            final_epochs_needed=self._final_epochs_needed,
            epoch_seconds=self._epoch_seconds,
            exported_models=self._exported_models,
        )
        if found:
            log.info(
                "the first trial's epochs take %.1f s on the final training's photos: "
                "exploration gets %.0f s of the %g s budget, the final training the rest "
                "(%d epochs wanted)",
                self._epoch_seconds,
                budget * (1.0 - reserve),
                budget,
                self._final_epochs_needed,
            )
        return reserve

    def expired(self) -> bool:
        """Whether exploration's share is spent: no new trial, and running ones stop."""
        seconds = self.seconds
        return seconds is not None and self._clock.spent() >= seconds

    def stop_reason(self) -> str:
        """The stop reason of a trial this clock ended."""
        return (
            f"exploration's share of the search's budget ran out ({self.seconds:.0f} of "
            f"{self._clock.seconds:g} s; the rest trains the best architecture to the end)"
        )
