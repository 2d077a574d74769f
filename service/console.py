"""Rendering searches in the terminal (the demo; later the CLI)."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def format_score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def describe_architecture(hyperparameters: dict[str, Any]) -> str:
    """A compact text of a convnet trial, e.g. ``32→64(1x1) | gap_dense 128 | lr 0.001``."""
    blocks = int(hyperparameters.get("conv_blocks", 0))
    convs = []
    for block in range(blocks):
        filters = hyperparameters.get(f"filters_{block}", "?")
        one_by_one = "(1x1)" if hyperparameters.get(f"one_by_one_{block}") else ""
        convs.append(f"{filters}{one_by_one}")
    head = str(hyperparameters.get("head", "?"))
    if "dense_units" in hyperparameters and head != "gap":
        head += f" {hyperparameters['dense_units']}"
    return f"{'→'.join(convs)} | {head} | lr {hyperparameters.get('learning_rate', '?')}"


def leaderboard_table(board: dict[str, Any], limit: int | None = None) -> Table:
    """The leaderboard as a rich table, best first."""
    table = Table(title=f"Leaderboard ({board['objective']})")
    for column, justify in (
        ("rank", "right"),
        ("trial", "left"),
        ("status", "left"),
        ("score", "right"),
        ("params", "right"),
        ("epochs", "right"),
        ("seconds", "right"),
        ("architecture", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for trial in board["trials"][:limit]:
        table.add_row(
            str(trial["rank"] or "-"),
            trial["trial_id"],
            trial["status"],
            format_score(trial["score"]),
            f"{trial['params']:,}" if trial["params"] else "-",
            str(trial["epochs"]),
            f"{trial['seconds']:.1f}",
            describe_architecture(trial["hyperparameters"]),
        )
    return table
