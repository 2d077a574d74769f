"""Dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status

from nas.api.auth import CallerDep
from nas.core.settings import Settings
from nas.core.store import SearchRecord, Store


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SearchId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="The search's id.")]


def search_not_found(search_id: str) -> HTTPException:
    """The 404 of a search that is missing or not the caller's to see."""
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no search {search_id}")


def get_search(search_id: SearchId, store: StoreDep, caller: CallerDep) -> SearchRecord:
    """The search, if the caller may see it; another owner's search is as absent as a
    missing one (404, same body), so ids cannot be probed."""
    search = store.get_search(search_id)
    if search is None or not caller.may_see(search.owner):
        raise search_not_found(search_id)
    return search


SearchDep = Annotated[SearchRecord, Depends(get_search)]
