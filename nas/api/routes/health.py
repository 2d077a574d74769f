"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from nas.api.deps import StoreDep
from nas.api.schemas import error_responses

router = APIRouter(tags=["health"], responses=error_responses(503))


@router.get("/healthz")
def healthz(store: StoreDep) -> dict[str, str]:
    """``ok`` when the API answers and its database does (503 otherwise)."""
    store.ping()
    return {"status": "ok"}
