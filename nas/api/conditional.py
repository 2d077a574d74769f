"""Conditional GETs of a search's representations (RFC 9110): each carries a weak ETag made
of the search's revision, and a request whose ``If-None-Match`` holds the current one gets a
``304 Not Modified`` from one small query, without the search's trials being read.

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

from fastapi import Header, HTTPException, Request, status

from nas.api.auth import CallerDep
from nas.api.deps import SearchId, StoreDep, search_not_found
from nas.core.store import SearchRecord

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


def revalidated(name: str) -> Callable[..., Representation]:
    """A dependency that answers 304 (or 404) when the request's ``If-None-Match`` holds the
    current tag of the search's ``name`` representation, reading only its owner and revision;
    otherwise it hands the route the representation, to tag its answer with. Declare it
    before the search: its point is that a 304 never loads the search."""

    def revalidate(
        search_id: SearchId,
        request: Request,
        store: StoreDep,
        caller: CallerDep,
        if_none_match: IfNoneMatch = None,
    ) -> Representation:
        representation = Representation(name=name, version=request.app.version)
        if if_none_match is None:
            return representation
        current = store.get_revision(search_id)
        if current is None or not caller.may_see(current.owner):
            raise search_not_found(search_id)
        headers = representation.headers_at(search_id, current.revision)
        if not none_match(if_none_match, headers["ETag"]):
            raise HTTPException(status.HTTP_304_NOT_MODIFIED, headers=headers)
        return representation

    return revalidate
