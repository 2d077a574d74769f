"""When each token was last used, noted in memory and written in one transaction at a time.

Marking ``last_used_at`` from the request would make the first request of every token each
minute a write: fifty dashboards opened at once queue behind fifty commits. The API notes uses
here instead, and its background task writes them all at once every ``FLUSH_SECONDS`` (and at
shutdown), so a request never waits on a write to be authenticated.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from nas.core.store import Store, TokenRecord

#: How stale ``last_used_at`` may get before a use is noted again.
TOUCH_INTERVAL = timedelta(minutes=1)
#: How often the noted uses are written.
FLUSH_SECONDS = 5.0


class TokenUses:
    """Uses of tokens not yet written, by token id; shared by the API's threads."""

    def __init__(self) -> None:
        self._pending: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def note(self, token: TokenRecord, at: datetime) -> None:
        """Note a use of ``token`` at ``at`` if its recorded last use is stale."""
        if token.last_used_at is not None and at - token.last_used_at <= TOUCH_INTERVAL:
            return
        with self._lock:
            self._pending.setdefault(token.id, at)

    def flush(self, store: Store) -> int:
        """Write the noted uses in one transaction; returns how many. Uses noted meanwhile
        wait for the next flush; on a store error the taken ones are noted again."""
        with self._lock:
            taken, self._pending = self._pending, {}
        if not taken:
            return 0
        try:
            store.touch_tokens(taken)
        except BaseException:
            with self._lock:
                self._pending = taken | self._pending
            raise
        return len(taken)
