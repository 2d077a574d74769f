"""Exported models of a search: list, summary, SavedModel tarball, .keras file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, PlainTextResponse

from nas.api.deps import SearchDep, SettingsDep, StoreDep
from nas.api.schemas import ModelList, ModelOut, error_responses
from nas.core.artifacts import ModelArtifacts, SearchArtifacts
from nas.core.store import ExportedModel

router = APIRouter(
    prefix="/v1/searches/{search_id}/models",
    tags=["models"],
    responses=error_responses(404, 503),
)

Rank = Annotated[int, PathParam(ge=1, le=1000, description="1 is the best model.")]


@router.get("")
def list_models(search: SearchDep, store: StoreDep) -> ModelList:
    """The exported models, best first."""
    return ModelList(
        search_id=search.id, models=[ModelOut.of(model) for model in store.list_models(search.id)]
    )


def _exported(search: SearchDep, store: StoreDep, rank: Rank) -> ExportedModel:
    for model in store.list_models(search.id):
        if model.rank == rank:
            return model
    raise HTTPException(
        status.HTTP_404_NOT_FOUND, detail=f"search {search.id} has no model ranked {rank}"
    )


def _model_files(
    search: SearchDep, store: StoreDep, settings: SettingsDep, rank: Rank
) -> ModelArtifacts:
    _exported(search, store, rank)
    return SearchArtifacts(settings.artifacts_dir, search.id).model(rank)


def _existing(path: Path, what: str) -> Path:
    if not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"this model has no {what}")
    return path


def _file_response(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"content": {media_type: {}}, "description": description}}


@router.get("/{rank}/summary", responses=_file_response("text/plain", "model.summary()"))
def get_summary(
    search: SearchDep, store: StoreDep, settings: SettingsDep, rank: Rank
) -> PlainTextResponse:
    """The text of ``model.summary()``."""
    files = _model_files(search, store, settings, rank)
    return PlainTextResponse(_existing(files.summary_file, "summary").read_text(encoding="utf-8"))


@router.get(
    "/{rank}/savedmodel", responses=_file_response("application/gzip", "SavedModel tarball")
)
def get_savedmodel(
    search: SearchDep, store: StoreDep, settings: SettingsDep, rank: Rank
) -> FileResponse:
    """A ``.tar.gz`` of the SavedModel directory (serving signature takes 0-255 RGB)."""
    if "savedmodel" not in _exported(search, store, rank).formats:
        # A worker without TensorFlow (the JAX backend alone) exports .keras files only.
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail="SavedModel export needs TensorFlow on the worker; "
            "this model was exported as a .keras file only",
        )
    files = SearchArtifacts(settings.artifacts_dir, search.id).model(rank)
    return FileResponse(
        _existing(files.savedmodel_tarball, "SavedModel export"),
        media_type="application/gzip",
        filename=f"{search.id}-rank{rank}-savedmodel.tar.gz",
    )


@router.get("/{rank}/keras", responses=_file_response("application/octet-stream", ".keras file"))
def get_keras(
    search: SearchDep, store: StoreDep, settings: SettingsDep, rank: Rank
) -> FileResponse:
    """The native ``.keras`` file."""
    files = _model_files(search, store, settings, rank)
    return FileResponse(
        _existing(files.keras_file, ".keras file"),
        media_type="application/octet-stream",
        filename=f"{search.id}-rank{rank}.keras",
    )
