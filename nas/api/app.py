"""The FastAPI application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import Depends, FastAPI, Request, status
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from nas.api import docs
from nas.api.auth import authenticate
from nas.api.auth_failures import AuthFailureLimiter
from nas.api.body_limit import BodySizeLimit
from nas.api.dashboard import assets as dashboard_assets
from nas.api.dashboard import router as dashboard_router
from nas.api.json_bodies import StrictJSONBodies, validation_error_as_json
from nas.api.rate_limit import RateLimiter
from nas.api.rendered import RenderedAnswers
from nas.api.routes import health, models, searches, spaces, workers
from nas.api.schemas import error_responses
from nas.api.token_uses import FLUSH_SECONDS, TokenUses
from nas.core.errors import InvalidRequestError, StoreError, StoreUnavailableError
from nas.core.settings import Settings, get_settings
from nas.core.store import Store, create_store, ensure_schema_current
from nas.core.tokens import FIRST_TOKEN_HINT, has_active_token

log = logging.getLogger(__name__)


async def reap_expired_forever(store: Store, settings: Settings) -> None:
    """Take back the slots and finishing steps of workers that stopped heartbeating, in case
    no worker is there to."""
    period = max(1.0, settings.lease_seconds / 4)
    while True:
        await asyncio.sleep(period)
        try:
            reaped = await asyncio.to_thread(store.reap_expired, settings.max_attempts)
        except StoreError as error:
            log.warning("could not look for expired leases: %s", error)
            continue
        if reaped:
            log.warning("took back the slots and steps of dead workers in %s", reaped)


async def write_token_uses_forever(store: Store, uses: TokenUses) -> None:
    """Write the tokens' noted uses every few seconds, off the requests' path."""
    while True:
        await asyncio.sleep(FLUSH_SECONDS)
        try:
            await asyncio.to_thread(uses.flush, store)
        except StoreError as error:
            log.warning("could not note when tokens were last used: %s", error)


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    """The API on ``settings``' database; refuses a database whose schema does not match."""
    settings = settings or get_settings()
    store = store or create_store(settings.database_url)
    ensure_schema_current(store.engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if not has_active_token(store):
            log.warning("no API token can open /v1 yet; %s", FIRST_TOKEN_HINT)
        background = [
            asyncio.create_task(reap_expired_forever(store, settings)),
            asyncio.create_task(write_token_uses_forever(store, app.state.token_uses)),
        ]
        # FastAPI runs sync routes and dependencies on the event loop's default thread limiter.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        yield
        for task in background:
            task.cancel()
        with contextlib.suppress(StoreError):
            app.state.token_uses.flush(store)
        store.dispose()

    app = FastAPI(
        title="Keras NAS service",
        summary="Architecture search for Keras image classifiers, as a service.",
        version="0.1.0",
        lifespan=lifespan,
        # Starlette's slash redirect builds its Location from the client's Host header.
        redirect_slashes=False,
        # The docs are served from this package (nas/api/docs.py); ReDoc is off, since
        # FastAPI's page for it loads its script and fonts from CDNs.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.token_uses = TokenUses()
    app.state.rendered_answers = RenderedAnswers(settings.api_answer_cache_bytes)
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    app.state.auth_failures = AuthFailureLimiter(
        settings.auth_failures_per_minute, settings.auth_failures_burst
    )
    # Added first, so it runs inside the size limit: it sees only bodies within it.
    app.add_middleware(StrictJSONBodies)
    app.add_middleware(BodySizeLimit, max_bytes=settings.limit_body_bytes)
    app.add_exception_handler(RequestValidationError, validation_error_as_json)
    app.include_router(health.router)
    app.include_router(docs.router)
    app.mount("/docs/assets", docs.assets, name="docs-assets")
    # The dashboard is open: its data comes from /v1, with the token the page asks for.
    app.include_router(dashboard_router)
    app.mount("/static", dashboard_assets, name="static")
    # Every /v1 router needs a token, whether or not its routes ask who the caller is.
    for module in (searches, models, spaces, workers):
        app.include_router(
            module.router,
            dependencies=[Depends(authenticate)],
            responses=error_responses(401, 429),
        )

    @app.exception_handler(InvalidRequestError)
    async def invalid_request(request: Request, error: InvalidRequestError) -> JSONResponse:
        # The same 422 as FastAPI's own validation, naming each wrong field of the body.
        return await request_validation_exception_handler(
            request, RequestValidationError(list(error.problems))
        )

    @app.exception_handler(StoreUnavailableError)
    async def database_unavailable(_request: Request, error: StoreUnavailableError) -> JSONResponse:
        log.warning("%s", error)
        return JSONResponse(
            {"detail": "the database is unavailable; retry shortly"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "2"},
        )

    return app
