"""The opaque cursors of search lists: where the next page starts (the key of a page's last
search), so that pages neither repeat nor skip searches submitted while a client pages."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime

from fastapi.exceptions import RequestValidationError

from nas.core.store import SearchKey

_SEARCH_ID = re.compile(r"^[0-9a-f]{32}$")


def encode_cursor(key: SearchKey) -> str:
    """``key`` as a URL-safe string that clients pass back unchanged."""
    raw = json.dumps([key.created_at.isoformat(), key.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> SearchKey:
    """The key in ``cursor``; a 422 naming the ``cursor`` query field if it is not one of
    :func:`encode_cursor`'s."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, search_id = json.loads(raw)
        key = SearchKey(created_at=datetime.fromisoformat(created_at), id=search_id)
        if key.created_at.tzinfo is None or not _SEARCH_ID.match(key.id):
            raise ValueError(cursor)
    except (ValueError, TypeError, binascii.Error):
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("query", "cursor"),
                    "msg": "not a cursor of this API: pass a page's next_cursor unchanged",
                    "input": cursor,
                }
            ]
        ) from None
    return key
