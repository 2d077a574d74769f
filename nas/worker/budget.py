"""The clock a search's time budget runs on: wall-clock seconds from the start of the
search's current run, on the seconds of its budget left for that run.

The start is the store's ``resumed_at`` (set when a worker first takes a slot in the search,
or first takes one after an extension, and kept), so every process of a search (each slot of
each worker on any host, its finishing step) reads the same clock. An extended search's run
gets the seconds the extension added and those its earlier runs left; the idle time between
its runs is not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

#: The share of a time budget kept for training the best architectures to the end (when the
#: search trains any): exploration stops handing out trials once the rest is spent.
FINAL_TRAINING_SHARE = 0.4


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

    def exploration(self, reserve: float) -> SearchClock:
        """The clock exploration runs on: this one, less the ``reserve`` share of its budget
        kept for what follows it."""
        if self.seconds is None:
            return self
        return SearchClock(self.started_at, self.seconds * (1.0 - reserve))
