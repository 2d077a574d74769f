"""Who the test clients speak for: the default owner and the token header."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

OWNER = "alice"

#: ``client_as(owner, admin=False)`` (a conftest fixture): a client with a new token.
ClientFactory = Callable[..., TestClient]


def bearer(token: str) -> dict[str, str]:
    """The header that presents ``token``."""
    return {"Authorization": f"Bearer {token}"}


def secret_part(token: str) -> str:
    """The random part of ``nas_<id>_<secret>``; the secret itself may contain ``_``."""
    return token.split("_", 2)[2]
