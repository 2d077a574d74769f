"""Conditional GETs of a search's representations (RFC 9110): each carries a weak ETag made
of the search's revision, and a request whose ``If-None-Match`` holds the current one gets a
``304 Not Modified`` from one small query, without the search's trials being read. A full
answer is rendered once per revision and kept (``nas.api.rendered``) for the other callers.

The tags are weak: on PostgreSQL a representation is read after its revision, in statements
that may see later writes, so two answers under one tag may differ (never the newer tag on the
older data). Owners and admins see the same representations, so the caller is not in the tag.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Header, HTTPException, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from nas.api.auth import CallerDep
from nas.api.deps import SearchId, StoreDep, search_not_found
from nas.api.rendered import Rendered, RenderedAnswers
from nas.core.store import SearchRecord, Store

#: Caches may keep an answer but must ask again before reusing it.
CACHE_CONTROL = "private, no-cache"
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not Modified: the If-None-Match tag is still current (no body)"}
}
_ENTITY_TAG = re.compile(r'\s*(?:W/)?"([^"]*)"\s*(?:,|$)')

IfNoneMatch = Annotated[
    str | None,
    Header(
        description="The ETag of the copy the client has: an unchanged search answers 304.",
    ),
]


def entity_tag(search_id: str, revision: int, representation: str, version: str) -> str:
    """The weak ETag of one representation of a search at one revision, for one version of
    the API (an upgrade may change what a representation holds)."""
    made_of = f"{version}\0{search_id}\0{revision}\0{representation}"
    return f'W/"{hashlib.sha256(made_of.encode()).hexdigest()[:24]}"'


def none_match(if_none_match: str, tag: str) -> bool:
    """Whether the ``If-None-Match`` condition holds for the current ``tag`` (a full answer
    is due): false for ``*`` or a list holding ``tag`` by weak comparison (the opaque parts
    alone, ``W/`` or not). A malformed header holds, so it costs a full answer, never a
    wrong 304."""
    if if_none_match.strip() == "*":
        return False
    current = tag.removeprefix("W/").strip('"')
    listed, position = [], 0
    while position < len(if_none_match):
        found = _ENTITY_TAG.match(if_none_match, position)
        if found is None:
            return True
        listed.append(found.group(1))
        position = found.end()
    return current not in listed


@dataclass(frozen=True)
class Representation:
    """One representation of searches (``search``, ``leaderboard``...) in this API version."""

    name: str
    version: str

    def headers(self, search: SearchRecord) -> dict[str, str]:
        """The validators of ``search``'s answer in this representation."""
        return self.headers_at(search.id, search.revision)

    def headers_at(self, search_id: str, revision: int) -> dict[str, str]:
        """The validators of the search ``search_id`` at ``revision`` in this representation."""
        return {
            "ETag": entity_tag(search_id, revision, self.name, self.version),
            "Cache-Control": CACHE_CONTROL,
        }


@dataclass(frozen=True)
class Revalidated:
    """A request for a representation of a search the caller may see, at its current
    revision: :meth:`answer` serves it from the rendered answers or renders it."""

    representation: Representation
    search_id: str
    #: The current ETag and Cache-Control of the search in this representation.
    validators: dict[str, str]
    store: Store
    answers: RenderedAnswers

    def answer(self, render: Callable[[SearchRecord], Rendered]) -> Response:
        """The rendered answer kept under the current tag, else ``render`` of the search as
        read now, kept under the tag of the revision it was read at."""
        kept = self.answers.get(self.validators["ETag"])
        if kept is not None:
            return kept.response(self.validators)
        search = self.store.get_search(self.search_id)
        if search is None:  # deleted since its revision was read
            raise search_not_found(self.search_id)
        validators = self.representation.headers(search)
        rendered = render(search)
        self.answers.put(validators["ETag"], rendered)
        return rendered.response(validators)


def json_answer(model: BaseModel) -> Rendered:
    """``model`` as FastAPI would send it from a route declaring it as the response model."""
    return Rendered(JSONResponse(jsonable_encoder(model)).body, "application/json")


def revalidated(name: str) -> Callable[..., Revalidated]:
    """A dependency that answers 404 for a search the caller may not see, and 304 when the
    request's ``If-None-Match`` holds the current tag of the search's ``name``
    representation, from one query for the search's owner and revision; otherwise the route
    gets a :class:`Revalidated` to answer with."""

    def revalidate(
        search_id: SearchId,
        request: Request,
        store: StoreDep,
        caller: CallerDep,
        if_none_match: IfNoneMatch = None,
    ) -> Revalidated:
        representation = Representation(name=name, version=request.app.version)
        current = store.get_revision(search_id)
        if current is None or not caller.may_see(current.owner):
            raise search_not_found(search_id)
        validators = representation.headers_at(search_id, current.revision)
        if if_none_match is not None and not none_match(if_none_match, validators["ETag"]):
            raise HTTPException(status.HTTP_304_NOT_MODIFIED, headers=validators)
        return Revalidated(
            representation, search_id, validators, store, request.app.state.rendered_answers
        )

    return revalidate
