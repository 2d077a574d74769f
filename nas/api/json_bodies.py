"""Keep what JSON cannot carry out of the API: NaN, Infinity, numbers past a double's range
and lone UTF-16 surrogates in a request body are a 422 naming the field, and a 422 whose
input cannot be written as JSON is answered without that input.

Python's ``json`` reads all of those, but they cannot be written back (``allow_nan=False``,
strict UTF-8), so echoing them in an error, or storing them, failed with a 500.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Loc = tuple[str | int, ...]


class _Constant:
    """``NaN``, ``Infinity`` or ``-Infinity`` as it was written in the body."""

    def __init__(self, name: str) -> None:
        self.name = name


def _is_json_media_type(content_type: str) -> bool:
    # The same types FastAPI parses as JSON: application/json and application/*+json.
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _problem(value: Any) -> str | None:
    if isinstance(value, _Constant):
        return f"{value.name} is not a JSON number"
    if isinstance(value, float) and math.isinf(value):
        return "the number is out of the range of a double, which JSON numbers must fit"
    if isinstance(value, str) and _has_lone_surrogate(value):
        return "the string holds a lone UTF-16 surrogate, which is not Unicode (JSON text)"
    return None


def problems_in(document: Any) -> list[dict[str, Any]]:
    """FastAPI-style errors for every value of ``document`` (parsed with constants kept as
    ``_Constant``) that JSON cannot carry; an object with such a key is named itself."""
    found: list[dict[str, Any]] = []
    pending: list[tuple[Loc, Any]] = [((), document)]
    # A loop rather than recursion: a deeply nested body must not exhaust the stack.
    while pending:
        loc, value = pending.pop()
        if isinstance(value, dict):
            if any(_has_lone_surrogate(key) for key in value):
                found.append(_error(loc, "a key holds a lone UTF-16 surrogate, which is not JSON"))
                continue
            pending.extend(((*loc, key), item) for key, item in value.items())
        elif isinstance(value, list):
            pending.extend(((*loc, index), item) for index, item in enumerate(value))
        elif (message := _problem(value)) is not None:
            found.append(_error(loc, message))
    return sorted(found, key=lambda error: [str(part) for part in error["loc"]])


def _error(loc: Loc, message: str) -> dict[str, Any]:
    return {"type": "json_invalid", "loc": ["body", *loc], "msg": message}


class StrictJSONBodies:
    """ASGI middleware: a JSON body holding what JSON cannot carry is a 422 naming each place.

    It watches the body as the route reads it and raises the 422 once the body is complete,
    so routes that read no body cost nothing and the body size limit still counts first.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = Headers(scope=scope).get("content-type") if scope["type"] == "http" else None
        if content_type is None or not _is_json_media_type(content_type):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def receive_checked() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    _refuse_what_json_cannot_carry(b"".join(chunks))
            return message

        await self.app(scope, receive_checked, send)


def _refuse_what_json_cannot_carry(body: bytes) -> None:
    try:
        document = json.loads(body, parse_constant=_Constant)
    except ValueError:
        return  # not JSON at all: FastAPI answers that itself
    except RecursionError:
        return  # nested too deeply to parse: FastAPI answers that itself too
    if errors := problems_in(document):
        # An HTTPException, so that FastAPI passes it on while reading the body.
        raise HTTPException(422, detail=errors)


async def validation_error_as_json(
    _request: Request, error: RequestValidationError
) -> JSONResponse:
    """FastAPI's 422, with the ``input`` and ``ctx`` of an error left out where they cannot
    be written as JSON (a body of bytes that are not UTF-8, say)."""
    return JSONResponse({"detail": [_writable(problem) for problem in error.errors()]}, 422)


def _writable(problem: dict[str, Any]) -> Any:
    try:
        encoded = jsonable_encoder(problem)
        json.dumps(encoded, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeError):
        return jsonable_encoder({k: v for k, v in problem.items() if k not in {"input", "ctx"}})
    return encoded
