"""Refused authentications, counted per client address: past their rate, an address's
requests are refused before the token is looked up, except with a token seen valid."""

from __future__ import annotations

import threading

from nas.api.rate_limit import RateLimiter
from nas.core.tokens import hash_token


class AuthFailureLimiter:
    """A bucket per client address that each refused authentication takes from.

    An address with an empty bucket gets 429 without a database lookup. A token that this
    process has already accepted still goes through from it (and is checked as usual), so an
    address shared with someone guessing (a NAT, a proxy) does not lock out its valid tokens.
    """

    def __init__(self, per_minute: float, burst: int) -> None:
        self._failures = RateLimiter(per_minute, burst)
        # Hashes of tokens accepted before: bounded by the tokens that exist, since only a
        # token the store recognised is added.
        self._accepted: set[str] = set()
        self._lock = threading.Lock()

    def retry_after(self, address: str, token: str | None) -> float:
        """0.0 if a request from ``address`` presenting ``token`` may be checked, else the
        seconds until its address may try again."""
        if token is not None and self._known(token):
            return 0.0
        return self._failures.retry_after(address)

    def accepted(self, token: str) -> None:
        """Note a token the store recognised."""
        with self._lock:
            self._accepted.add(hash_token(token))

    def refused(self, address: str, token: str | None) -> None:
        """Count a refused authentication against ``address`` (a revoked token loses its
        pass)."""
        if token is not None:
            with self._lock:
                self._accepted.discard(hash_token(token))
        self._failures.acquire(address)

    def _known(self, token: str) -> bool:
        with self._lock:
            return hash_token(token) in self._accepted
