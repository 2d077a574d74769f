"""A token bucket per API token, kept in the memory of one API process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Up to ``burst`` requests at once per key, refilled at ``per_minute`` a minute.

    Each API process counts on its own, so N processes allow N times the rate.
    """

    def __init__(
        self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._per_second = per_minute / 60.0
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """Take one request from ``key``'s bucket: 0.0 if it may go on, else the seconds
        until it may retry."""
        with self._lock:
            now = self._clock()
            tokens, then = self._buckets.get(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - then) * self._per_second)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return (1.0 - tokens) / self._per_second
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
