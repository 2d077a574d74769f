"""The OpenAPI docs: Swagger UI from this server only, under a Content-Security-Policy, since
the dashboard on the same origin keeps its token in sessionStorage; no ReDoc."""

from __future__ import annotations

import re

from tests.support.owners import ClientFactory


def test_docs_load_swagger_ui_from_this_server_only(client_as: ClientFactory) -> None:
    stranger = client_as(None)

    page = stranger.get("/docs")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), "an inline script"
    referenced = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert any(reference.endswith("swagger-ui-bundle.js") for reference in referenced)
    assert any(reference.endswith("swagger-ui.css") for reference in referenced)
    for reference in referenced:
        assert not re.match(r"^(https?:)?//", reference), reference
        assert stranger.get(f"/{reference.lstrip('/')}").status_code == 200, reference
    bundle = next(r for r in referenced if r.endswith("swagger-ui-bundle.js"))
    assert "SwaggerUIBundle" in stranger.get(f"/{bundle.lstrip('/')}").text
    assert stranger.get("/openapi.json").json()["info"]["title"] == "Keras NAS service"


def test_redoc_is_off(client_as: ClientFactory) -> None:
    assert client_as(None).get("/redoc").status_code == 404
