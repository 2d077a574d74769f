"""Plain KerasTuner against a search through the service, in one run on one machine.

Both tune the same codelab-like convnet space (``nas.hypermodels``) with ``RandomSearch`` and the
same seed, so they try the same architectures, on the same photos, split the same way, for the
same trials, epochs and batch size. The photos are decoded once before either is timed.

- Plain KerasTuner: a script written as a user would write it (``tuner.search(x, y,
  validation_data=...)``, then the best model saved as ``.keras``), in its own process; its wall
  time runs from the process start to its exit.
- The service: a real ``nas serve`` and ``nas worker`` on a SQLite file, started and idle
  first; its wall time runs from ``POST /v1/searches`` until the search has succeeded with its
  best model exported.

It prints one table: wall time, the ratio, seconds per trial, steady images/s (training images
over the median epoch time after the first), compile seconds per trial (first epoch minus a
steady one) and the best validation accuracy of each. ``--parallel-trials 1 4`` runs the service
once per value against the same plain baseline.

    python -m benchmarks.speed_vs_keras_tuner [DATA] --backend jax --image-size 192 \\
        --trials 10 --epochs 15 --batch-size 128 --parallel-trials 4 --json result.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "flowers"
VALIDATION_SPLIT = 0.2
SPLIT_SEED = 0
# Variables that would make the plain run something other than what a user gets by default.
SERVICE_ONLY_VARIABLES = ("JAX_COMPILATION_CACHE_DIR", "XLA_PYTHON_CLIENT_PREALLOCATE")


@dataclass(frozen=True)
class RunResult:
    """What one contender did: its wall time, each trial's epoch times, its best score."""

    name: str
    wall_seconds: float
    epoch_seconds: list[list[float]]
    best_val_accuracy: float | None
    details: dict[str, Any]

    @property
    def trials(self) -> int:
        return len(self.epoch_seconds)

    def steady_epoch_seconds(self) -> float | None:
        """The median over trials of each trial's median epoch time after the first."""
        steady = [statistics.median(epochs[1:]) for epochs in self.epoch_seconds if epochs[1:]]
        return statistics.median(steady) if steady else None

    def compile_seconds(self) -> float | None:
        """The mean over trials of the first epoch's time minus that trial's steady epoch."""
        extra = [
            epochs[0] - statistics.median(epochs[1:]) for epochs in self.epoch_seconds if epochs[1:]
        ]
        return statistics.fmean(extra) if extra else None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.plain_run:
        _plain_keras_tuner(json.loads(Path(args.plain_run).read_text()))
        return 0
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="nas-speed-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return _compare(args, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "jax"))
    parser.add_argument("--image-size", type=int, default=192)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images-per-class", type=int, default=None, help="Default: all.")
    parser.add_argument("--seed", type=int, default=1, help="Seed of both tuners.")
    parser.add_argument("--precision", default="auto", help="The service search's precision.")
    parser.add_argument(
        "--parallel-trials",
        type=int,
        nargs="+",
        default=[1],
        help="Trials in flight on the service's worker (NAS_PARALLEL_TRIALS); one run each.",
    )
    parser.add_argument("--workdir", type=Path, help="Keep every file here (default: a temp dir).")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument("--plain-run", help=argparse.SUPPRESS)
    return parser


def _compare(args: argparse.Namespace, workdir: Path) -> int:
    from nas.core.folders import scan_folder
    from nas.worker.datasets import load_images, stratified_split

    # The service's search processes run niced by default; the plain run is not, and on a
    # shared machine that alone would decide the race.
    os.environ["NAS_SEARCH_NICENESS"] = "0"

    data = args.data.expanduser().resolve()
    started = time.perf_counter()
    images = load_images(
        scan_folder(data, args.images_per_class), args.image_size, workdir / "cache"
    )
    train, validation = stratified_split(images.labels, VALIDATION_SPLIT, SPLIT_SEED)
    setup = {
        "backend": args.backend,
        "data": str(data),
        "image_size": args.image_size,
        "images_per_class": args.images_per_class,
        "train_images": len(train),
        "validation_images": len(validation),
        "classes": len(images.class_names),
        "trials": args.trials,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "space": _space(args.image_size),
        "decode_seconds": round(time.perf_counter() - started, 1),
    }
    print(f"data: {json.dumps(setup)}", flush=True)
    results = [_run_plain(setup, workdir)]
    print(f"plain KerasTuner: {results[0].wall_seconds:.1f} s", flush=True)
    for parallel in args.parallel_trials:
        # Written after each run, so that a run cut short still leaves what it measured.
        _write_json(args.json, setup, results)
        result = _run_service(setup, workdir, parallel, args.precision)
        print(f"{result.name}: {result.wall_seconds:.1f} s", flush=True)
        results.append(result)
    _write_json(args.json, setup, results)
    print()
    print(format_table(results, setup))
    return 0 if all(result.trials == args.trials for result in results) else 1


def _write_json(path: Path | None, setup: dict[str, Any], results: list[RunResult]) -> None:
    if path is not None:
        path.write_text(
            json.dumps({"setup": setup, "results": [asdict(r) for r in results]}, indent=2)
        )


def _space(image_size: int) -> dict[str, int]:
    """The service's default space, with no more conv blocks than the images can halve."""
    return {"max_conv_blocks": min(6, int(math.log2(image_size)))}


# Plain KerasTuner --------------------------------------------------------------------------


def _run_plain(setup: dict[str, Any], workdir: Path) -> RunResult:
    run_dir = workdir / "plain"
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "config.json"
    config.write_text(
        json.dumps(setup | {"workdir": str(run_dir), "cache_dir": str(workdir / "cache")})
    )
    env = {name: value for name, value in os.environ.items() if name not in SERVICE_ONLY_VARIABLES}
    env |= {"KERAS_BACKEND": setup["backend"], "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.perf_counter()
    with (run_dir / "plain.log").open("wb") as log:
        code = subprocess.call(
            [sys.executable, "-m", "benchmarks.speed_vs_keras_tuner", "--plain-run", str(config)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    wall = time.perf_counter() - started
    if code != 0:
        tail = (run_dir / "plain.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the plain KerasTuner run failed (exit code {code}):\n{tail}")
    outcome = json.loads((run_dir / "result.json").read_text())
    return RunResult(
        name="plain KerasTuner",
        wall_seconds=wall,
        epoch_seconds=outcome["epoch_seconds"],
        best_val_accuracy=outcome["best_val_accuracy"],
        details={"search_seconds": outcome["search_seconds"]},
    )


def _plain_keras_tuner(config: dict[str, Any]) -> None:
    """What a user writes: load the photos, RandomSearch, save the best model."""
    import keras
    import keras_tuner

    from nas.core.folders import scan_folder
    from nas.core.specs import ConvNetSpace
    from nas.hypermodels import build_hypermodel
    from nas.worker.datasets import load_images, stratified_split

    run_dir = Path(config["workdir"])
    images = load_images(
        scan_folder(Path(config["data"]), config["images_per_class"]),
        config["image_size"],
        Path(config["cache_dir"]),
    )
    train, validation = stratified_split(images.labels, VALIDATION_SPLIT, SPLIT_SEED)
    x, y = images.images, images.labels
    hypermodel = build_hypermodel(
        ConvNetSpace(**config["space"]),
        config["image_size"],
        len(images.class_names),
        steps_per_epoch=math.ceil(len(train) / config["batch_size"]),
        epochs=config["epochs"],
    )
    tuner = keras_tuner.RandomSearch(
        hypermodel,
        objective="val_accuracy",
        max_trials=config["trials"],
        seed=config["seed"],
        directory=str(run_dir),
        project_name="keras_tuner",
        overwrite=True,
    )

    class EpochClock(keras.callbacks.Callback):
        """Times each epoch of each trial (the benchmark's only addition)."""

        trials: list[list[float]] = []  # noqa: RUF012 - shared by KerasTuner's copies

        def __deepcopy__(self, memo: dict[int, Any]) -> EpochClock:
            return self

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            self.trials.append([])

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.trials[-1].append(time.perf_counter() - self.started)

    started = time.perf_counter()
    tuner.search(
        x[train],
        y[train],
        validation_data=(x[validation], y[validation]),
        epochs=config["epochs"],
        batch_size=config["batch_size"],
        callbacks=[EpochClock()],
        verbose=0,
    )
    tuner.get_best_models(1)[0].save(run_dir / "best.keras")
    best = tuner.oracle.get_best_trials(1)[0]
    result = {
        "epoch_seconds": EpochClock.trials,
        "best_val_accuracy": best.score,
        "search_seconds": time.perf_counter() - started,
    }
    (run_dir / "result.json").write_text(json.dumps(result))


# The service ---------------------------------------------------------------------------------


def _run_service(
    setup: dict[str, Any], workdir: Path, parallel_trials: int, precision: str
) -> RunResult:
    from benchmarks.harness import running_service
    from nas.cli.launcher import wait_until

    run_dir = workdir / f"service-{parallel_trials}"
    run_dir.mkdir(parents=True, exist_ok=True)
    data = Path(setup["data"])
    body = {
        "dataset": {
            "path": str(data),
            "image_size": setup["image_size"],
            "max_images_per_class": setup["images_per_class"],
            "validation_split": VALIDATION_SPLIT,
            "seed": SPLIT_SEED,
        },
        "space": setup["space"],
        "tuner": {
            "algorithm": "random",
            "max_trials": setup["trials"],
            "epochs": setup["epochs"],
            "batch_size": setup["batch_size"],
            "seed": setup["seed"],
            "precision": precision,
            "patience": 0,  # plain KerasTuner trains every epoch: so must the service
        },
        "export_top_k": 1,
    }
    # A fresh service: its cache (and so its compilation cache) starts empty, like the plain
    # run; only the decoded photos are copied in, as the plain run reads them decoded too.
    with running_service(data, backend=setup["backend"], parallel_trials=parallel_trials) as nas:
        shutil.copytree(workdir / "cache", nas.settings.cache_dir, dirs_exist_ok=True)
        try:
            worker = nas.start_worker()
            wait_until(lambda: _worker_ready(nas.client, worker), 120, "the worker to start")
            started = time.perf_counter()
            search_id = nas.submit(body)
            search = nas.wait_for(search_id)
            models = nas.client.get(f"/v1/searches/{search_id}/models").json()["models"]
            wall = time.perf_counter() - started
            board = nas.client.get(f"/v1/searches/{search_id}/leaderboard").json()
        finally:
            for log in nas.folder.glob("*.log"):
                shutil.copy(log, run_dir / log.name)
    if search["status"] != "succeeded" or not models:
        log = (run_dir / "worker0.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the service's search {search['status']}: {search['error']}\n{log}")
    trials = sorted(board["trials"], key=lambda trial: trial["trial_id"])
    return RunResult(
        name=f"service, {parallel_trials} in flight",
        wall_seconds=wall,
        epoch_seconds=[[epoch["epoch_seconds"] for epoch in t["history"]] for t in trials],
        best_val_accuracy=models[0]["score"],
        details={
            "accelerator": search["accelerator"],
            "precision": search["precision"],
            "parallel_trials": parallel_trials,
            "formats": models[0]["formats"],
        },
    )


def _worker_ready(client: Any, worker: subprocess.Popen[bytes]) -> bool:
    if worker.poll() is not None:
        raise RuntimeError(f"the worker exited at start (exit code {worker.returncode})")
    return bool(client.get("/v1/workers").json()["items"])


# The table ------------------------------------------------------------------------------------


def format_table(results: list[RunResult], setup: dict[str, Any]) -> str:
    """The comparison as an aligned text table, plain KerasTuner first."""
    plain = results[0]
    trained = setup["trials"] * setup["epochs"] * setup["train_images"]
    rows: list[tuple[str, list[str]]] = [
        ("wall seconds", [f"{r.wall_seconds:.1f}" for r in results]),
        ("wall / plain wall", [f"{r.wall_seconds / plain.wall_seconds:.3f}" for r in results]),
        ("speed-up", [f"{plain.wall_seconds / r.wall_seconds:.2f}x" for r in results]),
        ("trials completed", [str(r.trials) for r in results]),
        ("seconds per trial", [f"{r.wall_seconds / max(r.trials, 1):.2f}" for r in results]),
        ("steady images/s", [_per_second(setup["train_images"], r) for r in results]),
        ("compile s per trial", [_maybe(r.compile_seconds(), "{:.2f}") for r in results]),
        ("images/s over the run", [f"{trained / r.wall_seconds:.0f}" for r in results]),
        ("best val_accuracy", [_maybe(r.best_val_accuracy, "{:.4f}") for r in results]),
    ]
    header = ["", *(r.name for r in results)]
    widths = [max(len(row[0]) for row in rows)] + [
        max(len(r.name), *(len(row[1][i]) for row in rows)) for i, r in enumerate(results)
    ]
    lines = [
        f"{setup['trials']} trials x {setup['epochs']} epochs, {setup['image_size']} px, batch "
        f"{setup['batch_size']}, {setup['train_images']} train / {setup['validation_images']} "
        f"validation images, KERAS_BACKEND={setup['backend']}",
        "  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True)),
    ]
    for label, cells in rows:
        lines.append(
            "  ".join(
                [label.ljust(widths[0])]
                + [cell.rjust(width) for cell, width in zip(cells, widths[1:], strict=True)]
            )
        )
    for result in results[1:]:
        lines.append(f"{result.name}: {json.dumps(result.details)}")
    return "\n".join(lines)


def _per_second(images: int, result: RunResult) -> str:
    steady = result.steady_epoch_seconds()
    return "n/a" if not steady else f"{images / steady:.0f}"


def _maybe(value: float | None, form: str) -> str:
    return "n/a" if value is None else form.format(value)


if __name__ == "__main__":
    sys.exit(main())
