"""The ``nas`` command: migrate the schema, serve the API, run a worker, run the demo,
manage tokens; and, as a client of a running service, submit and follow searches."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nas.cli import client_commands, token_commands

if TYPE_CHECKING:
    from nas.core.store import SchemaMismatchError

# The server-side commands import the storage layer (SQLAlchemy, Alembic) when they run:
# the client commands start in a fraction of the time without it.
app = typer.Typer(help="Neural architecture search for Keras, as a service.", no_args_is_help=True)
app.add_typer(token_commands.app, name="token")
client_commands.register(app)


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@app.command("migrate")
def migrate_command() -> None:
    """Create or upgrade the database schema (NAS_DATABASE_URL)."""
    from nas.core.settings import get_settings
    from nas.core.store import create_store, migrate
    from nas.core.tokens import FIRST_TOKEN_HINT, has_active_token

    store = create_store(get_settings().database_url)
    migrate(store.engine)
    first_token_needed = not has_active_token(store)
    store.dispose()
    typer.echo("database schema is up to date")
    if first_token_needed:
        typer.echo(f"no API token yet: {FIRST_TOKEN_HINT}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (NAS_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (NAS_PORT).")] = None,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs)."""
    import uvicorn

    from nas.api import create_app
    from nas.api.header_timeout import with_header_timeout
    from nas.core.settings import get_settings
    from nas.core.store import SchemaMismatchError

    _logging()
    settings = get_settings()
    try:
        api = create_app(settings)
    except SchemaMismatchError as error:
        raise typer.Exit(_refuse(error)) from None
    uvicorn.run(
        api,
        host=host or settings.host,
        port=port or settings.port,
        log_level="info",
        http=with_header_timeout(settings.header_timeout_seconds),
        limit_concurrency=settings.max_connections,
    )


@app.command()
def worker(
    exit_when_idle: Annotated[
        bool, typer.Option(help="Exit when no search needs a slot or a finishing step.")
    ] = False,
) -> None:
    """Run one worker: NAS_PARALLEL_TRIALS slots for the trials of the searches in the
    database, shared with the workers of every host on it (and the same artifacts folder)."""
    from nas.core.settings import get_settings
    from nas.core.store import SchemaMismatchError, create_store, ensure_schema_current
    from nas.worker.loop import Worker

    _logging()
    settings = get_settings()
    store = create_store(settings.database_url, retry_seconds=settings.store_retry_seconds)
    try:
        ensure_schema_current(store.engine)
    except SchemaMismatchError as error:
        raise typer.Exit(_refuse(error)) from None
    Worker(settings, store).run(exit_when_idle=exit_when_idle)
    store.dispose()


@app.command()
def demo(
    data_dir: Annotated[
        Path | None,
        typer.Argument(help="Folder of class subfolders; default NAS_DATA_DIR, else tf_flowers."),
    ] = None,
    image_size: Annotated[int, typer.Option(help="Image size of the demo search.")] = 64,
    max_trials: Annotated[int, typer.Option(help="Trials of the demo search.")] = 6,
    epochs: Annotated[int, typer.Option(help="Epochs per trial.")] = 6,
) -> None:
    """Start the API and a worker, run a search on the flowers photos, show the results."""
    from nas.cli.demo import run_demo

    raise typer.Exit(
        run_demo(data_dir=data_dir, image_size=image_size, max_trials=max_trials, epochs=epochs)
    )


def _refuse(error: SchemaMismatchError) -> int:
    typer.echo(f"error: {error}", err=True)
    return 2
