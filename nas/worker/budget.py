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


def final_training_reserve(
    budget_seconds: float, *, final_epochs_needed: int, epoch_seconds: float | None
) -> float:
    """The share of a budget of ``budget_seconds`` kept for the final trainings:
    :data:`FINAL_TRAINING_SHARE`, or more where that would not train
    ``final_epochs_needed`` epochs of ``epoch_seconds`` (None: not known yet), up to
    :data:`MOST_FINAL_TRAINING_SHARE`."""
    if epoch_seconds is None:
        return FINAL_TRAINING_SHARE
    needed = final_epochs_needed * epoch_seconds / budget_seconds
    return min(max(FINAL_TRAINING_SHARE, needed), MOST_FINAL_TRAINING_SHARE)


class ExplorationClock:
    """The clock exploration runs on: the search's, less the share of its budget kept for
    training the best architectures to the end (see :func:`final_training_reserve`).

    That share depends on how long the final training's epochs take, which the search's first
    trial tells (``epoch_seconds`` returns its epoch time scaled to the final training's
    photos, or None until it has timed epochs); until then, and without a budget, the share
    is :data:`FINAL_TRAINING_SHARE`. Every slot and the finishing step read the same first
    trial, so they agree on when exploration ends. ``expired`` is called at each batch: the
    epoch time is looked up at most every ``look_every_seconds``, and kept once found.
    """

    def __init__(
        self,
        clock: SearchClock,
        *,
        final_epochs_needed: int,
        epoch_seconds: Callable[[], float | None],
        look_every_seconds: float = EPOCH_TIME_LOOK_SECONDS,
    ) -> None:
        self._clock = clock
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
            budget, final_epochs_needed=self._final_epochs_needed, epoch_seconds=self._epoch_seconds
        )
        if found and reserve > FINAL_TRAINING_SHARE:
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
