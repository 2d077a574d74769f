"""A token bucket per key (an API token, a client address), kept in the memory of one API
process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Past this many keys, the buckets that have refilled are forgotten (they mean nothing more
# than a new one): keys such as client addresses are not bounded by anything else.
FORGET_FULL_PAST = 10_000


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
            tokens = self._tokens(key, now)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return self._wait(tokens)
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > FORGET_FULL_PAST:
                self._forget_full(now)
            return 0.0

    def retry_after(self, key: str) -> float:
        """What ``acquire`` would answer, without taking anything from the bucket."""
        with self._lock:
            return self._wait(self._tokens(key, self._clock()))

    def _tokens(self, key: str, now: float) -> float:
        tokens, then = self._buckets.get(key, (self._burst, now))
        return min(self._burst, tokens + (now - then) * self._per_second)

    def _wait(self, tokens: float) -> float:
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self._per_second

    def _forget_full(self, now: float) -> None:
        full = [key for key in self._buckets if self._tokens(key, now) >= self._burst]
        for key in full:
            del self._buckets[key]
