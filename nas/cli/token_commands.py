"""``nas token``: create, list and revoke the API tokens (run where the database is)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from nas.core.store import Store

# The storage layer is imported when a command runs, so that `nas` starts quickly for the
# client commands.

app = typer.Typer(help="API tokens: each one speaks for an owner.", no_args_is_help=True)


@contextmanager
def _store() -> Iterator[Store]:
    from nas.core.settings import get_settings
    from nas.core.store import SchemaMismatchError, create_store, ensure_schema_current

    store = create_store(get_settings().database_url)
    try:
        ensure_schema_current(store.engine)
        yield store
    except SchemaMismatchError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    finally:
        store.dispose()


def _owner(value: str) -> str:
    from nas.core.tokens import OWNER_PATTERN, valid_owner

    if not valid_owner(value):
        raise typer.BadParameter(f"must match {OWNER_PATTERN}")
    return value


@app.command()
def create(
    owner: Annotated[str, typer.Option(help="Whose searches the token reaches.", callback=_owner)],
    admin: Annotated[
        bool, typer.Option(help="Let the token see and cancel every owner's searches.")
    ] = False,
) -> None:
    """Create a token and print it once, alone on stdout; only its hash is stored."""
    from nas.core.tokens import issue_token

    with _store() as store:
        issued = issue_token(store, owner, admin=admin)
    kind = "admin token" if admin else "token"
    typer.echo(
        f"{kind} {issued.record.id} for {owner} created; it is shown only this once:",
        err=True,
    )
    typer.echo(issued.secret)


@app.command("list")
def list_tokens() -> None:
    """Every token: id, owner, admin, created, last used, revoked (never the secret)."""
    with _store() as store:
        tokens = store.list_tokens()
    table = Table("id", "owner", "admin", "created", "last used", "revoked")
    for token in tokens:
        table.add_row(
            token.id,
            token.owner,
            "yes" if token.admin else "",
            f"{token.created_at:%Y-%m-%d %H:%M:%S}",
            f"{token.last_used_at:%Y-%m-%d %H:%M:%S}" if token.last_used_at else "",
            f"{token.revoked_at:%Y-%m-%d %H:%M:%S}" if token.revoked_at else "",
        )
    Console(width=120).print(table)


@app.command()
def revoke(
    token: Annotated[
        str, typer.Argument(help="The token's id (from `nas token list`), or the token.")
    ],
) -> None:
    """Revoke a token: from now on it gets 401 everywhere."""
    from nas.core.tokens import token_id_of

    token_id = token_id_of(token) or token
    with _store() as store:
        revoked = store.revoke_token(token_id)
    if revoked is None:
        typer.echo(f"error: no token {token_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"token {revoked.id} of {revoked.owner} revoked")
