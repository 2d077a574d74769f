"""Rendering searches in the terminal: the client commands and the demo."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from nas.cli.client import NasClient
from nas.core.spaces.codelab_v2 import block_filters

ACTIVE = {"queued", "running"}
#: The width of output that no screen reads (a pipe, a file): wider than any table, so none
#: is squeezed into columns and cut.
UNBOUNDED_WIDTH = 100_000


def stdout_console(**options: Any) -> Console:
    """A console on stdout: the terminal's width on a terminal; elsewhere each table at its
    full width, every cell whole."""
    console = Console(**options)
    return console if console.is_terminal else Console(width=UNBOUNDED_WIDTH, **options)


def format_score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def dataset_source(dataset: dict[str, Any]) -> str:
    """Where a search's photos come from: its folder, its TFRecord glob, or ``tf_flowers``."""
    return dataset.get("path") or dataset.get("tfrecords") or dataset["name"]


def dataset_name(dataset: dict[str, Any]) -> str:
    """A dataset's short name: the last part of its source (``flowers``, ``train-*.tfrec``)."""
    parts = [part for part in dataset_source(dataset).split("/") if part]
    return parts[-1] if parts else dataset_source(dataset)


def describe_architecture(hyperparameters: dict[str, Any]) -> str:
    """A compact text of a convnet trial, e.g. ``32→64(1x1) | gap_dense 128 | lr 0.001``."""
    blocks = int(hyperparameters.get("conv_blocks", 0))
    convs = []
    for block in range(blocks):
        if "base_filters" in hyperparameters:  # version 2: filters grow per block
            filters = block_filters(
                hyperparameters["base_filters"], hyperparameters["filter_growth"], block
            )
            one_by_one = "(1x1)" if hyperparameters.get("one_by_one_conv") else ""
        else:
            filters = hyperparameters.get(f"filters_{block}", "?")
            one_by_one = "(1x1)" if hyperparameters.get(f"one_by_one_{block}") else ""
        convs.append(f"{filters}{one_by_one}")
    head = str(hyperparameters.get("head", "?"))
    if "dense_units" in hyperparameters and head != "gap":
        head += f" {hyperparameters['dense_units']}"
    return f"{'→'.join(convs)} | {head} | lr {hyperparameters.get('learning_rate', '?')}"


def leaderboard_table(board: dict[str, Any], limit: int | None = None) -> Table:
    """The leaderboard as a rich table, best first, with the training seconds of all its
    trials in the caption."""
    total = sum(trial["seconds"] for trial in board["trials"])
    table = Table(
        title=f"Leaderboard ({board['objective']})",
        caption=f"{len(board['trials'])} trials, {total:.1f} s of training in total",
    )
    for column, justify in (
        ("rank", "right"),
        ("trial", "left"),
        ("status", "left"),
        ("score", "right"),
        ("test acc", "right"),
        ("final ep", "right"),
        ("params", "right"),
        ("epochs", "right"),
        ("seconds", "right"),
        ("architecture", "left"),
        ("stopped early", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for trial in board["trials"][:limit]:
        table.add_row(
            str(trial["rank"] or "-"),
            trial["trial_id"],
            trial["status"],
            format_score(trial["score"]),
            format_score(trial.get("test_accuracy")),
            str(trial.get("final_epochs") or "-"),
            f"{trial['params']:,}" if trial["params"] else "-",
            str(trial["epochs"]),
            f"{trial['seconds']:.1f}",
            describe_architecture(trial["hyperparameters"]),
            trial.get("stop_reason") or "",
        )
    return table


def moment(value: str | None) -> datetime | None:
    """A timestamp of the API as an aware datetime (UTC when it names no zone)."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def clock(seconds: float | None) -> str:
    """``h:mm:ss``, or ``-:--:--`` when not known."""
    if seconds is None:
        return "-:--:--"
    whole = max(0, round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def elapsed_and_remaining(search: dict[str, Any]) -> tuple[float | None, float | None]:
    """Seconds the search has run (an extended search: in all its runs, not the idle time
    between them), and an estimate of the seconds it has left (from the mean time of its
    finished trials, at most what is left of its budget); None where not known yet."""
    extensions = search.get("extensions") or []
    earlier = extensions[-1] if extensions else {"wall_seconds": 0.0, "budget_spent": 0.0}
    # A server from before extensions sends no resumed_at: its searches have one run.
    resumed = moment(search.get("resumed_at", search["started_at"]))
    if resumed is None and not extensions:
        return None, None
    end = moment(search["finished_at"]) or datetime.now(UTC)
    this_run = 0.0 if resumed is None else (end - resumed).total_seconds()
    elapsed = earlier["wall_seconds"] + this_run
    done, planned = search["trials_done"], search["trials_planned"]
    if search["status"] not in ACTIVE:
        return elapsed, 0.0
    budget = (search["spec"].get("budget") or {}).get("seconds")
    left_of_budget = (
        None if budget is None else max(0.0, budget - earlier["budget_spent"] - this_run)
    )
    if not done:
        return elapsed, left_of_budget
    estimate = elapsed / done * max(0, planned - done)
    return elapsed, estimate if left_of_budget is None else min(estimate, left_of_budget)


def spent(search: dict[str, Any]) -> str:
    """What an ended search spent and which limit ended it, e.g. ``, 412.3 s of training,
    ended by budget``; empty while it runs."""
    if search.get("ended_by") is None:
        return ""
    return f", {search['training_seconds'] or 0:.1f} s of training, ended by {search['ended_by']}"


def best_score(search: dict[str, Any]) -> str:
    """The best trial's score so far, formatted."""
    best = search["best_trial"]
    return format_score(best["score"]) if best else "-"


def follow(client: NasClient, search_id: str, console: Console, interval: float) -> dict[str, Any]:
    """A live progress bar of the search until it ends; returns its last state."""
    columns = (
        TextColumn("[bold]{task.fields[status]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("trials · best {task.fields[best]} · {task.fields[elapsed]} elapsed"),
        TextColumn("· {task.fields[remaining]} left"),
    )
    search = client.search(search_id)
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("search", **_progress(search))
        while search["status"] in ACTIVE:
            time.sleep(interval)
            search = client.search(search_id)
            progress.update(task, **_progress(search))
    return search


def _progress(search: dict[str, Any]) -> dict[str, Any]:
    elapsed, remaining = elapsed_and_remaining(search)
    return {
        "total": search["trials_planned"],
        "completed": search["trials_done"],
        "status": search["status"],
        "best": best_score(search),
        "elapsed": clock(elapsed),
        "remaining": clock(remaining),
    }
