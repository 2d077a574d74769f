"""Every error the service raises on purpose, under one root: :class:`NasError`.

The layers above map them onto their own terms: the API answers an
:class:`InvalidRequestError` with a 422 naming the field and a :class:`StoreUnavailableError`
with a 503, the worker fails a search with a :class:`DatasetError`'s message, and so on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class NasError(Exception):
    """The root of the service's own errors."""


class InvalidRequestError(NasError):
    """A request the service refuses; ``problems`` name each wrong field of the body in
    FastAPI's own 422 format (``type``, ``loc``, ``msg``, ``input``)."""

    def __init__(self, problems: Sequence[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems))
        self.problems = tuple(problems)


def field_problem(loc: tuple[str, ...], message: str, value: Any) -> dict[str, Any]:
    """One problem of an :class:`InvalidRequestError`, naming the field at ``loc`` of the body."""
    return {"type": "value_error", "loc": ("body", *loc), "msg": message, "input": value}


def field_error(loc: tuple[str, ...], message: str, value: Any) -> InvalidRequestError:
    """A refusal naming the field at ``loc`` of the body."""
    return InvalidRequestError([field_problem(loc, message, value)])


class RestrictionError(NasError, ValueError):
    """A pin or narrowing that a hyperparameter does not allow (a ValueError, so that the
    spec's validators report it on the field)."""


class DatasetError(NasError, ValueError):
    """A dataset that cannot be used; the message is meant for the user who submitted it."""


class StoreError(NasError):
    """The store could not do what was asked."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached right now (a restart, a lock, a dropped link): the
    same call may succeed later."""


class SchemaMismatchError(StoreError):
    """The database schema is not the one this code was written for."""


class LeaseLostError(StoreError):
    """The search is no longer held by this worker attempt; it must stop writing."""


class StaleSearchError(StoreError):
    """The search changed since the caller read it (another request got there first)."""


class IdempotencyConflictError(StoreError):
    """An idempotency key was reused with a different request."""


class QueueFullError(StoreError):
    """The owner already has as many queued searches as allowed."""

    def __init__(self, owner: str, limit: int) -> None:
        super().__init__(f"{owner} already has {limit} queued searches")
        self.owner = owner
        self.limit = limit
