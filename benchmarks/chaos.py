"""Searches that survive their workers: eight small searches on three workers over PostgreSQL
while a random worker is SIGKILLed, with its children, every 25 s and a fresh one started in
its place. Every search must succeed with exactly its planned trials, each completed once.

Usage: python -m benchmarks.chaos [--runs N] [--searches 8] [--workers 3] [--every 25]
Exits 1 if any run broke the rule; prints each search's outcome.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.harness import Service, postgres_database, running_service
from tests.support.flowers import copy_flowers_slice

#: Algorithm, trials and epochs of the searches, taken in turn.
SEARCHES = (
    ("random", 4, 2),
    ("bayesian", 4, 2),
    ("hyperband", 4, 3),
    ("asha", 5, 3),
)
TERMINAL = {"succeeded", "failed", "cancelled"}


def search_body(photos: Path, number: int) -> dict[str, Any]:
    algorithm, trials, epochs = SEARCHES[number % len(SEARCHES)]
    return {
        "dataset": {"path": str(photos), "image_size": 32},
        "space": {"max_conv_blocks": 2},
        "tuner": {"algorithm": algorithm, "max_trials": trials, "epochs": epochs, "seed": number},
        "export_top_k": 1,
    }


def descendants(pid: int) -> list[int]:
    """The processes below ``pid``, deepest last."""
    found: list[int] = []
    children = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        direct = [int(child) for child in children.read_text().split()]
    except OSError:
        return found
    for child in direct:
        found += [child, *descendants(child)]
    return found


def kill_with_children(worker: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker and every process under it, at once."""
    for pid in [worker.pid, *descendants(worker.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    worker.wait()


def problems_of(service: Service, search_id: str) -> list[str]:
    """What breaks the rule for one finished search: not succeeded, a trial missing, failed or
    there twice."""
    search = service.client.get(f"/v1/searches/{search_id}").json()
    trials = service.client.get(f"/v1/searches/{search_id}/leaderboard").json()["trials"]
    found = []
    if search["status"] != "succeeded":
        found.append(f"{search['status']}: {search.get('error')}")
    statuses = Counter(trial["status"] for trial in trials)
    if statuses["completed"] != search["trials_planned"]:
        found.append(f"{dict(statuses)} of {search['trials_planned']} planned trials")
    ids = Counter(trial["trial_id"] for trial in trials)
    found += [f"trial {trial_id} listed {n} times" for trial_id, n in ids.items() if n > 1]
    return found


def chaos_run(args: argparse.Namespace, photos: Path, draws: random.Random) -> list[str]:
    """One run: the searches to their end under kills; the problems found."""
    with (
        postgres_database() as url,
        running_service(
            photos.parent,
            database_url=url,
            lease_seconds=args.lease,
            heartbeat_seconds=args.lease / 5,
        ) as service,
    ):
        ids = [service.submit(search_body(photos, number)) for number in range(args.searches)]
        workers = [service.start_worker(own_cache=True) for _ in range(args.workers)]
        kills = 0
        deadline = time.monotonic() + args.timeout
        next_kill = time.monotonic() + args.every
        while time.monotonic() < deadline:
            statuses = [service.client.get(f"/v1/searches/{i}").json()["status"] for i in ids]
            if all(status in TERMINAL for status in statuses):
                break
            if time.monotonic() >= next_kill:
                victim = draws.randrange(len(workers))
                kill_with_children(workers[victim])
                workers[victim] = service.start_worker(own_cache=True)
                kills += 1
                next_kill += args.every
            time.sleep(1.0)
        problems = [
            f"search {search_id[:8]}: {problem}"
            for search_id in ids
            for problem in problems_of(service, search_id)
        ]
    print(f"run: {args.searches} searches, {kills} workers killed, {len(problems)} problems")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--searches", type=int, default=8)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--every", type=float, default=25.0, help="seconds between kills")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--lease", type=float, default=15.0, help="NAS_LEASE_SECONDS (heartbeat: a fifth)"
    )
    args = parser.parse_args()
    draws = random.Random(args.seed)
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nas-chaos-") as temp:
        photos = copy_flowers_slice(Path(temp) / "flowers", per_class=12)
        for _ in range(args.runs):
            problems += chaos_run(args, photos, draws)
    for problem in problems:
        print(problem)
    print("every search succeeded with its planned trials" if not problems else "FAILED")
    raise SystemExit(1 if problems else 0)


if __name__ == "__main__":
    main()
