"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import StoreDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(store: StoreDep) -> dict[str, str]:
    """``ok`` when the API answers and its database does (503 otherwise)."""
    store.ping()
    return {"status": "ok"}
