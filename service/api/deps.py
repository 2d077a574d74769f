"""Dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status

from service.settings import Settings
from service.store import SearchRecord, Store


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SearchId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="The search's id.")]


def get_search(search_id: SearchId, store: StoreDep) -> SearchRecord:
    search = store.get_search(search_id)
    if search is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no search {search_id}")
    return search


SearchDep = Annotated[SearchRecord, Depends(get_search)]
