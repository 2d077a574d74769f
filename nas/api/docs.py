"""The OpenAPI docs at ``/docs``: Swagger UI served from this package, under the dashboard's
Content-Security-Policy.

FastAPI's own page loads Swagger UI from a CDN (without subresource integrity) and starts it
with an inline script, on the origin where the dashboard keeps its token. The files in
``swagger_ui/assets`` are Swagger UI 5.35.0 from the ``swagger-ui-dist`` npm package
(Apache-2.0, ``swagger-ui-LICENSE``; the licenses of what its bundle contains are in
``swagger-ui-bundle.js.LICENSE.txt``; its favicon), and ``init.js``, which starts it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from nas.api.dashboard import CONTENT_SECURITY_POLICY

SWAGGER_UI_DIR = Path(__file__).parent / "swagger_ui"

router = APIRouter(include_in_schema=False)


@router.get("/docs")
def swagger_ui() -> FileResponse:
    """Swagger UI on ``/openapi.json``."""
    return FileResponse(
        SWAGGER_UI_DIR / "index.html",
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"},
    )


#: Swagger UI's script and styles and the script that starts it, served at ``/docs/assets``.
assets = StaticFiles(directory=SWAGGER_UI_DIR / "assets")
