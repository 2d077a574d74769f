"""One search on one worker and on two: the wall time of the same 12-trial search with 1
worker and with 2 workers, each worker held to one core (``taskset -c``, TensorFlow's thread
pools of 1), in one run on the same database server. Prints the wall-time ratio (2 workers
over 1; the goal on a 2-core machine is at most 0.6) and which worker ran each trial.

Usage: python -m benchmarks.scale_out [DATA_DIR] [--database postgres|sqlite]
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import FLOWERS, postgres_database, running_service
from nas.cli.launcher import wait_until

TRIALS = 12


def search_body(data_dir: Path, image_size: int, epochs: int) -> dict[str, Any]:
    """12 random trials of ``epochs`` epochs, exported as they are: the trials are what the
    workers share."""
    return {
        "dataset": {"path": str(data_dir), "image_size": image_size},
        "space": {"max_conv_blocks": 3},
        "tuner": {
            "algorithm": "random",
            "max_trials": TRIALS,
            "epochs": epochs,
            "seed": 7,
            "patience": 0,
        },
        "final_top_k": 0,
        "export_top_k": 1,
    }


@dataclass(frozen=True)
class Run:
    """One search on ``workers`` workers: its wall time and the trials each worker ran."""

    workers: int
    seconds: float
    status: str
    trials_by_worker: dict[str, int]


@contextlib.contextmanager
def database(kind: str) -> Iterator[str | None]:
    if kind == "sqlite":
        yield None
        return
    with postgres_database() as url:
        yield url


def run_search(data_dir: Path, workers: int, args: argparse.Namespace) -> Run:
    """The search on ``workers`` workers, worker i on core i; timed from its submit (the
    workers already waiting) to its end."""
    with (
        database(args.database) as url,
        running_service(data_dir, database_url=url) as service,
    ):
        for core in range(workers):
            service.start_worker(cpus=str(core), own_cache=True)
        wait_until(
            lambda: len(service.client.get("/v1/workers").json()["items"]) >= workers,
            120,
            "the workers",
        )
        started = time.perf_counter()
        search_id = service.submit(search_body(data_dir, args.image_size, args.epochs))
        search = service.wait_for(search_id)
        seconds = time.perf_counter() - started
        trials = service.client.get(f"/v1/searches/{search_id}/leaderboard").json()["trials"]
    by_worker = Counter(str(trial.get("worker_id")) for trial in trials)
    return Run(workers, seconds, search["status"], dict(by_worker))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?", type=Path, default=FLOWERS)
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    runs = [run_search(args.data_dir, workers, args) for workers in (1, 2)]
    for run in runs:
        print(
            f"{run.workers} worker(s): {run.seconds:.1f} s, {run.status}, "
            f"trials by worker {run.trials_by_worker}"
        )
    one, two = runs
    print(f"wall-time ratio, 2 workers over 1: {two.seconds / one.seconds:.2f} (goal <= 0.6)")


if __name__ == "__main__":
    main()
