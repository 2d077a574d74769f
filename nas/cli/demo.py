"""``nas demo``: the README's one command. Starts the API and a worker on the SQLite default,
runs a real search on the flowers photos with a token of its own, shows progress, the
leaderboard and the best model, and says how to make a token of your own."""

from __future__ import annotations

import os
import time
from pathlib import Path

from rich.console import Console

from nas.cli.client import NasClient
from nas.cli.console import follow, format_score, leaderboard_table, stdout_console
from nas.cli.launcher import settings_env, start_nas, stop_process, wait_until
from nas.core.artifacts import SearchArtifacts
from nas.core.ports import free_port
from nas.core.settings import Settings, get_settings
from nas.core.spaces.codelab_v2 import SMALL_DATA_FOCUS
from nas.core.store import create_store, migrate
from nas.core.tokens import FIRST_TOKEN_HINT, issue_token

DEMO_OWNER = "demo"


def resolve_data_dir(data_dir: Path | None) -> Path | None:
    """The argument, else NAS_DATA_DIR, else None: the worker then downloads tf_flowers."""
    if data_dir is None and os.environ.get("NAS_DATA_DIR"):
        data_dir = Path(os.environ["NAS_DATA_DIR"])
    return None if data_dir is None else data_dir.expanduser().resolve()


def run_demo(*, data_dir: Path | None, image_size: int, max_trials: int, epochs: int) -> int:
    """Run the demo; returns the process exit code (0 when the search succeeded)."""
    console = stdout_console()
    settings = get_settings()
    data_dir = resolve_data_dir(data_dir)
    extra_roots = [] if data_dir is None else [data_dir]
    settings = settings.model_copy(
        update={"data_roots": [*settings.data_roots, *extra_roots], "port": free_port()}
    )
    store = create_store(settings.database_url)
    migrate(store.engine)
    token = issue_token(store, DEMO_OWNER)
    console.print(
        f"Demo token {token.record.id} (owner {DEMO_OWNER}, revoked when the demo ends); "
        f"{FIRST_TOKEN_HINT}"
    )

    logs = settings.artifacts_dir.parent / "logs"
    env = settings_env(settings)
    api = start_nas(["serve", "--port", str(settings.port)], env, logs / "api.log")
    worker = start_nas(["worker"], env, logs / "worker.log")
    base_url = f"http://{settings.host}:{settings.port}"
    console.print(f"API on [bold]{base_url}[/] (docs: {base_url}/docs); logs in {logs}/")
    started = time.monotonic()
    try:
        with NasClient(base_url, token.secret) as client:
            wait_until(lambda: _healthy(client, api), 60, "the API to start")
            body = {
                "dataset": _dataset(data_dir, image_size),
                "space": {"version": 2, "hyperparameters": _focus(image_size)},
                "tuner": {"algorithm": "random", "max_trials": max_trials, "epochs": epochs},
                "export_top_k": 3,
            }
            search = client.submit(body)
            console.print(
                f"Submitted search [bold]{search['id']}[/] on "
                f"{data_dir or 'tf_flowers (the worker downloads it once)'}"
            )
            search = follow(client, search["id"], console, interval=1.0)
            board = client.leaderboard(search["id"])
            console.print(leaderboard_table(board))
            _report(client, search, settings, console, time.monotonic() - started)
            return 0 if search["status"] == "succeeded" else 1
    finally:
        stop_process(worker)
        stop_process(api)
        store.revoke_token(token.record.id)
        store.dispose()


def _focus(image_size: int) -> dict:
    """Version 2 around what trains well on small data; larger images may take a 5th block."""
    depth = {"fixed": 4} if image_size < 128 else {"values": [4, 5]}
    return {**SMALL_DATA_FOCUS, "conv_blocks": depth}


def _dataset(data_dir: Path | None, image_size: int) -> dict:
    source = {"name": "tf_flowers"} if data_dir is None else {"path": str(data_dir)}
    return {**source, "image_size": image_size}


def _healthy(client: NasClient, api: object) -> bool:
    if api.poll() is not None:
        raise RuntimeError("the API exited at start; see var/logs/api.log")
    return client.healthy()


def _report(
    client: NasClient, search: dict, settings: Settings, console: Console, seconds: float
) -> None:
    accelerator = search.get("accelerator") or {}
    console.print(
        f"Search {search['status']} in {seconds:.0f} s on {accelerator.get('platform', '?')} "
        f"({accelerator.get('strategy', '?')}, {search.get('precision')})."
    )
    if search["status"] != "succeeded":
        console.print(f"[red]{search.get('error')}[/]")
        return
    models = client.models(search["id"])
    best = models[0]
    files = SearchArtifacts(settings.artifacts_dir, search["id"]).model(best["rank"])
    download = best["links"].get("savedmodel", best["links"]["keras"])
    # A JAX worker without TensorFlow exports only the .keras file.
    saved = (
        f"  SavedModel: {files.savedmodel_dir.resolve()}\n"
        if "savedmodel" in best["formats"]
        else "  SavedModel: not exported (the worker ran without TensorFlow)\n"
    )
    console.print(
        f"Best model: trial {best['trial_id']}, {search['spec']['objective']} "
        f"{format_score(best['score'])}, {best['params']:,} parameters.\n"
        f"{saved}"
        f"  Keras file: {files.keras_file.resolve()}\n"
        f"  Download:   {client.url}{download}\n"
        f"              (with a token of owner {DEMO_OWNER}: nas token create --owner {DEMO_OWNER})"
    )
