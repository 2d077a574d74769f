"""``nas demo``: the README's one command. Starts the API and a worker on the SQLite default,
runs a real search on the flowers photos with a token of its own, shows progress, the
leaderboard and the best model, and says how to make a token of your own."""

from __future__ import annotations

import os
import tarfile
import time
from pathlib import Path

from rich.console import Console

from service.artifacts import SearchArtifacts
from service.client import NasClient
from service.console import follow, format_score, leaderboard_table
from service.launcher import free_port, settings_env, start_nas, stop_process, wait_until
from service.settings import Settings, get_settings
from service.store import create_store, migrate
from service.tokens import FIRST_TOKEN_HINT, issue_token

DEMO_OWNER = "demo"

TF_FLOWERS_URL = (
    "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"
)


def download_tf_flowers(destination: Path) -> Path:
    """Fetch the tf_flowers photos (3,670 JPEGs in 5 class folders) unless already there."""
    folder = destination / "flower_photos"
    if folder.is_dir():
        return folder
    import keras

    archive = keras.utils.get_file(
        "flower_photos.tgz", TF_FLOWERS_URL, cache_dir=str(destination), cache_subdir="."
    )
    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter="data")
    return folder


def resolve_data_dir(data_dir: Path | None, settings: Settings, console: Console) -> Path:
    """The argument, else NAS_DATA_DIR, else tf_flowers downloaded under ``var/data``."""
    if data_dir is None and os.environ.get("NAS_DATA_DIR"):
        data_dir = Path(os.environ["NAS_DATA_DIR"])
    if data_dir is None:
        console.print("No data folder given: downloading tf_flowers ...")
        data_dir = download_tf_flowers(settings.cache_dir.parent / "data")
    return data_dir.expanduser().resolve()


def run_demo(*, data_dir: Path | None, image_size: int, max_trials: int, epochs: int) -> int:
    """Run the demo; returns the process exit code (0 when the search succeeded)."""
    console = Console()
    settings = get_settings()
    data_dir = resolve_data_dir(data_dir, settings, console)
    settings = settings.model_copy(
        update={"data_roots": [*settings.data_roots, data_dir], "port": free_port()}
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
                "dataset": {"path": str(data_dir), "image_size": image_size},
                "space": {
                    "version": 2,
                    "hyperparameters": {"conv_blocks": {"max": 4 if image_size < 128 else 5}},
                },
                "tuner": {"algorithm": "random", "max_trials": max_trials, "epochs": epochs},
                "export_top_k": 3,
            }
            search = client.submit(body)
            console.print(f"Submitted search [bold]{search['id']}[/] on {data_dir}")
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
