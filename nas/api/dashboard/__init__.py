"""The dashboard: static pages at ``/`` that read the ``/v1`` API with the user's token.

The page and its assets are open; everything it shows comes from ``/v1``, which asks for the
token the page keeps for its browser tab.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"

# The page holds a token: it runs only its own scripts and styles, and is never framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    """The dashboard's single page (its views are chosen by the URL's fragment)."""
    return FileResponse(
        STATIC_DIR / "index.html",
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"},
    )


#: The page's scripts, styles and the vendored Chart.js, served at ``/static``.
assets = StaticFiles(directory=STATIC_DIR)
