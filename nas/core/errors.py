"""422 answers in FastAPI's own format, naming the field of the body that is wrong."""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError


def field_problem(loc: tuple[str, ...], message: str, value: Any) -> dict[str, Any]:
    """One error of a 422 in FastAPI's own format, naming the field at ``loc`` of the body."""
    return {"type": "value_error", "loc": ("body", *loc), "msg": message, "input": value}


def field_error(loc: tuple[str, ...], message: str, value: Any) -> RequestValidationError:
    """A 422 naming the field at ``loc`` of the body."""
    return RequestValidationError([field_problem(loc, message, value)])
