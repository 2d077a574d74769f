"""A deadline for reading a request's headers, which uvicorn does not have.

uvicorn closes a connection idle between requests (``timeout_keep_alive``), but one that
sends part of a request line or of its headers and then nothing is held for as long as the
client likes, so a few hundred such connections hold the server's sockets. This is the only
module that builds on uvicorn's protocol class; ``tests/e2e/test_serve_hardening.py`` checks
that the hooks and attributes named below are still there.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: The methods of uvicorn's protocol this module overrides.
UVICORN_HOOKS = (
    "connection_made",
    "connection_lost",
    "on_headers_complete",
    "on_response_complete",
)
#: The attributes of a protocol instance it reads.
UVICORN_ATTRIBUTES = ("loop", "transport", "cycle")


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request headers are not
    complete ``header_timeout`` seconds after it opened or after its last response."""

    header_timeout: float = 10.0
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_overdue)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_overdue(self) -> None:
        self._header_deadline = None
        # A pipelined request whose headers came in while the one before it ran is served.
        if self.cycle is not None and not self.cycle.response_complete:
            return
        if not self.transport.is_closing():
            self.transport.close()


def with_header_timeout(seconds: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class to give ``uvicorn.run(http=...)`` for a deadline of ``seconds``."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": seconds})
