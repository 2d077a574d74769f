"""The ``nas`` client commands: submit, watch, status, leaderboard, download, cancel and
extend searches on a running service, over its HTTP API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape
from rich.table import Table

from nas.cli.client import DEFAULT_URL, ApiError, ModelFormat, NasClient
from nas.cli.console import (
    best_score,
    clock,
    dataset_name,
    dataset_source,
    elapsed_and_remaining,
    follow,
    format_score,
    leaderboard_table,
    moment,
    spent,
    stdout_console,
)

PANEL = "Client (talks to a running service)"
#: ``nas watch`` exits with this when the search ended but did not succeed.
NOT_SUCCEEDED_EXIT = 2

Url = Annotated[str, typer.Option("--url", envvar="NAS_URL", help="The service's base URL.")]
Token = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="NAS_TOKEN", help="API token (nas token create).", show_default=False
    ),
]
SearchIdArg = Annotated[str, typer.Argument(help="The search's id (from nas submit).")]


def _fail(message: str) -> NoReturn:
    """One line on stderr, exit code 1: what a user needs, never a traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@contextmanager
def _client(url: str, token: str | None) -> Iterator[NasClient]:
    """A client whose every failure becomes one line on stderr and exit code 1."""
    if not token:
        _fail("no API token: pass --token or set NAS_TOKEN")
        raise typer.Exit(1)
    try:
        with NasClient(url, token) as client:
            yield client
    except ApiError as error:
        _fail(str(error))


def _read_spec(path: Path) -> dict[str, Any]:
    import yaml

    text = path.read_text(encoding="utf-8")
    try:
        spec = yaml.safe_load(text) if path.suffix in {".yaml", ".yml"} else json.loads(text)
    except (ValueError, yaml.YAMLError) as error:
        kind = "YAML" if path.suffix in {".yaml", ".yml"} else "JSON"
        reason = str(error).splitlines()[0]
        _fail(f"{path} is not valid {kind}: {reason}")
    if not isinstance(spec, dict):
        _fail(f"{path} must hold a mapping (the search spec)")
    return spec


def submit(
    spec_file: Annotated[
        Path,
        typer.Argument(
            help="The search spec, as JSON or YAML (.yaml, .yml): the body of POST /v1/searches.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="Submitting again with the same key and spec returns the same search."),
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Queue a search; prints its id alone on stdout (ID=$(nas submit spec.yaml))."""
    spec = _read_spec(spec_file)
    with _client(url, token) as client:
        search = client.submit(spec, idempotency_key=idempotency_key)
    typer.echo(
        f"search {search['id']} {search['status']}, {search['trials_planned']} trials planned",
        err=True,
    )
    typer.echo(search["id"])


def watch(
    search_id: SearchIdArg,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between polls.")] = 2.0,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Follow a search with a live progress bar until it ends.

    Exit code 0 if it succeeded, 2 if it failed or was cancelled."""
    console = stdout_console(highlight=False)
    with _client(url, token) as client:
        search = follow(client, search_id, console, interval)
    elapsed, _ = elapsed_and_remaining(search)
    objective = search["spec"]["objective"]
    console.print(
        f"search {search_id} {search['status']}: {search['trials_done']}/"
        f"{search['trials_planned']} trials, best {objective} {best_score(search)}, "
        f"{clock(elapsed)} elapsed{spent(search)}",
        markup=False,
    )
    if search["status"] != "succeeded":
        if search["error"]:
            typer.echo(f"error: {search['error']}", err=True)
        raise typer.Exit(NOT_SUCCEEDED_EXIT)


def leaderboard(
    search_id: SearchIdArg,
    top: Annotated[int | None, typer.Option(min=1, help="Show only the best N trials.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON instead.")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """The search's trials, best first, with their architectures."""
    with _client(url, token) as client:
        board = client.leaderboard(search_id)
    if as_json:
        typer.echo(json.dumps(board | {"trials": board["trials"][:top]}, indent=2))
        return
    stdout_console().print(leaderboard_table(board, limit=top))


def download(
    search_id: SearchIdArg,
    rank: Annotated[int, typer.Option(min=1, help="1 is the best model.")] = 1,
    model_format: Annotated[
        ModelFormat, typer.Option("--format", help="A SavedModel .tar.gz or a .keras file.")
    ] = ModelFormat.SAVEDMODEL,
    output: Annotated[
        Path | None,
        typer.Option(help="File to write, or folder to put it in; default the current folder."),
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Download an exported model; prints the file's path."""
    with _client(url, token) as client:
        path = client.download(search_id, rank, model_format, output)
    typer.echo(str(path))


def cancel(search_id: SearchIdArg, url: Url = DEFAULT_URL, token: Token = None) -> None:
    """Cancel a search: a queued one never starts, a running one stops at the next epoch."""
    with _client(url, token) as client:
        search = client.cancel(search_id)
    state = "cancelled" if search["status"] == "cancelled" else "stops at the next epoch"
    typer.echo(f"search {search_id} {state}")


def extend(
    search_id: SearchIdArg,
    trials: Annotated[
        int | None,
        typer.Option(min=1, help="Trials to add (asha: configurations).", show_default=False),
    ] = None,
    seconds: Annotated[
        int | None,
        typer.Option(min=1, help="Seconds to add to its time budget.", show_default=False),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="Extending again with the same key and values changes nothing more."),
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Give a search that ended more trials or seconds: it is queued again and continues
    where it stopped, keeping its trials."""
    if trials is None and seconds is None:
        _fail("give --trials, --seconds or both")
    with _client(url, token) as client:
        search = client.extend(
            search_id, max_trials=trials, seconds=seconds, idempotency_key=idempotency_key
        )
    typer.echo(f"search {search_id} {search['status']}, {search['trials_planned']} trials planned")


def _search_lines(search: dict[str, Any]) -> list[tuple[str, str]]:
    elapsed, remaining = elapsed_and_remaining(search)
    best = search["best_trial"]
    accelerator = search["accelerator"] or {}
    lines = [
        ("id", search["id"]),
        ("owner", search["owner"]),
        (
            "status",
            search["status"] + (" (cancel requested)" if search["cancel_requested"] else ""),
        ),
        ("trials", f"{search['trials_done']}/{search['trials_planned']}"),
        (
            f"best {search['spec']['objective']}",
            f"{format_score(best['score'])} (trial {best['trial_id']})" if best else "-",
        ),
        ("elapsed", clock(elapsed)),
        ("remaining", clock(remaining)),
        ("dataset", dataset_source(search["spec"]["dataset"])),
        ("accelerator", accelerator.get("platform", "-")),
        ("precision", search["precision"] or "-"),
        ("created", search["created_at"]),
    ]
    return [*lines, ("error", search["error"])] if search["error"] else lines


def status(
    search_id: Annotated[
        str | None, typer.Argument(help="A search's id; without one, list your searches.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="Searches to list.")] = 20,
    cursor: Annotated[
        str | None, typer.Option(help="Where to start: the --cursor a previous page printed.")
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Your searches, newest first; or one search's status and progress."""
    console = stdout_console(highlight=False)
    with _client(url, token) as client:
        if search_id is not None:
            table = Table(show_header=False, box=None)
            for name, value in _search_lines(client.search(search_id)):
                table.add_row(f"[bold]{escape(name)}[/]", escape(value))
            console.print(table)
            return
        page = client.searches(limit=limit, cursor=cursor)
    table = Table(title=f"Searches ({len(page['items'])} of {page['total']}, newest first)")
    for column in ("id", "dataset", "status", "trials", "best", "objective", "created"):
        table.add_column(column, no_wrap=column == "id")
    for search in page["items"]:
        table.add_row(
            search["id"],
            escape(dataset_name(search["spec"]["dataset"])),
            search["status"],
            f"{search['trials_done']}/{search['trials_planned']}",
            best_score(search),
            search["spec"]["objective"],
            f"{moment(search['created_at']):%Y-%m-%d %H:%M:%S}",
        )
    console.print(table)
    if page["next_cursor"]:
        console.print(
            f"older searches: nas status --cursor {page['next_cursor']}",
            markup=False,
            soft_wrap=True,
        )


def register(app: typer.Typer) -> None:
    """Add the client commands to the ``nas`` app."""
    for command in (submit, watch, status, leaderboard, download, cancel, extend):
        app.command(rich_help_panel=PANEL)(command)
