"""The search spaces a request may name, with every hyperparameter's default and bounds."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from nas.core.spaces.registry import SPACES

router = APIRouter(prefix="/v1/spaces", tags=["spaces"])


class SpaceOut(BaseModel):
    name: str
    version: int
    description: str
    narrowing: str
    hyperparameters: list[dict[str, Any]]


class SpaceList(BaseModel):
    items: list[SpaceOut]


@router.get("")
def list_spaces() -> SpaceList:
    """Each space by name and version: what it is, how a request pins or narrows it, and each
    hyperparameter's type, default and bounds or choices (``active_when`` for conditional
    ones)."""
    return SpaceList(
        items=[
            SpaceOut(
                name=space.name,
                version=space.version,
                description=space.description,
                narrowing=space.narrowing,
                hyperparameters=[item.describe() for item in space.hyperparameters],
            )
            for space in SPACES
        ]
    )
