"""Who is calling: the bearer token of every ``/v1`` request, its owner and its rate, and
the rate of refused tokens from the caller's address."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from math import ceil
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from nas.api.auth_failures import AuthFailureLimiter
from nas.api.token_uses import TokenUses
from nas.core.store import Store
from nas.core.tokens import find_active_token

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="A token from `nas token create --owner NAME`.",
)


@dataclass(frozen=True)
class Caller:
    """The owner a request speaks for."""

    token_id: str
    owner: str
    admin: bool

    def may_see(self, owner: str) -> bool:
        """Whether this caller may read and cancel the searches of ``owner``."""
        return self.admin or owner == self.owner


def _unauthorized() -> HTTPException:
    # One answer for a missing, malformed, unknown or revoked token; it never echoes it.
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="a valid bearer token is required (create one with `nas token create`)",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _too_many(wait: float, detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        detail=f"{detail}; retry after the time in Retry-After",
        headers={"Retry-After": str(ceil(wait))},
    )


def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Caller:
    """The caller of a ``/v1`` request: 401 without an active token, 429 past its rate or
    past its address's rate of refused tokens."""
    presented = None if credentials is None else credentials.credentials
    address = request.client.host if request.client else ""
    failures: AuthFailureLimiter = request.app.state.auth_failures
    wait = failures.retry_after(address, presented)
    if wait > 0:
        raise _too_many(
            wait, "too many refused tokens from this address (NAS_AUTH_FAILURES_PER_MINUTE)"
        )
    store: Store = request.app.state.store
    token = None if presented is None else find_active_token(store, presented)
    if presented is None or token is None:
        failures.refused(address, presented)
        raise _unauthorized()
    failures.accepted(presented)
    token_uses: TokenUses = request.app.state.token_uses
    token_uses.note(token, datetime.now(UTC))
    wait = request.app.state.rate_limiter.acquire(token.id)
    if wait > 0:
        raise _too_many(wait, "too many requests for this token (NAS_RATE_LIMIT_PER_MINUTE)")
    return Caller(token_id=token.id, owner=token.owner, admin=token.admin)


CallerDep = Annotated[Caller, Depends(authenticate)]


def require_admin(caller: CallerDep) -> Caller:
    """The caller, if its token is an admin token; 403 otherwise."""
    if not caller.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="this needs an admin token")
    return caller
