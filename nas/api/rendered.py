"""The last rendered answers of searches, kept under their ETags.

Fifty dashboards polling one search ask for the same bytes: each revision of a search's
representation is rendered once (its trials read, validated and serialized) and the other
callers get the stored bytes after one small query for the current revision. A search's
revision changes with every write to it, so a stored answer is never served for a later one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from fastapi import Response


@dataclass(frozen=True)
class Rendered:
    """One representation of a search as sent: its body, media type and own headers (the
    validators come from its tag)."""

    body: bytes
    media_type: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def response(self, validators: Mapping[str, str]) -> Response:
        """The answer, with ``validators`` (ETag, Cache-Control) added."""
        return Response(
            self.body, media_type=self.media_type, headers={**self.headers, **validators}
        )


class RenderedAnswers:
    """Rendered answers by ETag, the least recently used dropped past ``max_bytes`` in all.

    Shared by the API's threads; an answer larger than a quarter of ``max_bytes`` is not
    kept (it would push out many others).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._answers: OrderedDict[str, Rendered] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, tag: str) -> Rendered | None:
        """The answer kept under ``tag``, if any."""
        with self._lock:
            found = self._answers.get(tag)
            if found is not None:
                self._answers.move_to_end(tag)
            return found

    def put(self, tag: str, answer: Rendered) -> None:
        """Keep ``answer`` under ``tag``, dropping the least recently used past the bound."""
        if len(answer.body) > self.max_bytes // 4:
            return
        with self._lock:
            replaced = self._answers.pop(tag, None)
            if replaced is not None:
                self._bytes -= len(replaced.body)
            self._answers[tag] = answer
            self._bytes += len(answer.body)
            while self._bytes > self.max_bytes:
                _, dropped = self._answers.popitem(last=False)
                self._bytes -= len(dropped.body)

    @property
    def size_bytes(self) -> int:
        """The bytes of the bodies kept now."""
        return self._bytes
