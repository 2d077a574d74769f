"""What scheduling costs a trial: ``--processes`` slots (8 by default) of one search, each in
its own process as on eight workers, share its oracle through the store: each asks for a
trial, trains it (a sleep), reports one epoch and ends it, ``--trials`` times. Prints the
median and p95 of each transaction (ask, report, end) and of ask + end per trial: the goal on
PostgreSQL is a median under 20 ms, so that scheduling never limits trials of a few seconds.

Two scenarios, labelled as such in what it prints:

- realistic (the default, ``--trial-seconds 2``): each trial trains for a time drawn
  uniformly in [0.5 S, 1.5 S] (seeded by ``--seed``), and all slots ask for their first trial
  at once; that is the goal's case.
- stress (``--trial-seconds 0``): no training between, every slot asks again as soon as it
  ended a trial, so the steps queue for the search's lock all the time: the ask is about
  ``--processes`` steps long. It measures how many steps a second a search can take, not what
  a trial waits.

Usage: python -m benchmarks.scheduling_overhead [--processes 8] [--trials 20]
[--trial-seconds 2] [--seed 0] [--database postgres|sqlite]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.synchronize import Barrier
from pathlib import Path

from benchmarks.harness import postgres_database
from nas.core.settings import Settings
from nas.core.store import create_store, migrate
from tests.support.flowers import copy_flowers_slice

#: Per trial: the seconds of its ask, report and end, and this process's CPU seconds in them.
Timings = list[tuple[float, float, float, float]]


def search_spec(photos: Path, trials: int) -> dict:
    return {
        "dataset": {"path": str(photos), "image_size": 32},
        "space": {"max_conv_blocks": 2},
        "tuner": {"algorithm": "random", "max_trials": trials, "epochs": 1, "seed": 0},
    }


def trial_durations(trial_seconds: float, trials: int, seed: int, number: int) -> list[float]:
    """What each of slot ``number``'s trials trains for: uniform in [0.5, 1.5] x the mean."""
    draws = random.Random(f"{seed}-{number}")
    return [draws.uniform(0.5, 1.5) * trial_seconds for _ in range(trials)]


def slot_main(
    settings: Settings, number: int, durations: list[float], start: Barrier, out: object
) -> None:
    """One slot: join the search, build its tuner, then time an ask/report/end per trial,
    each trial training (sleeping) for its duration between the ask and the report."""
    os.environ["KERAS_BACKEND"] = settings.backend
    # After the backend is set: these import Keras.
    import keras_tuner

    from nas.worker.search import prepare_search
    from nas.worker.shared_oracle import SharedOracle
    from nas.worker.signals import Interruptions

    store = create_store(settings.database_url)
    # A join skips a search another join has locked: ask again, as a worker's next tick does.
    while (lease := store.join_next(f"w-{number}", hostname="bench", lease_seconds=3600)) is None:
        time.sleep(0.05)
    setup = prepare_search(
        store, settings, lease, Interruptions(), journal=None, ensure_held=lambda: None
    )
    # As a slot's ``tuner.search(verbose=0)`` sets it: no trial tables printed.
    setup.tuner.oracle.verbose = 0
    oracle = SharedOracle(setup.tuner.oracle, store, lease)
    timings: Timings = []
    start.wait()
    for duration in durations:
        asking = time.process_time()
        asked = time.perf_counter()
        trial = oracle.create_trial(lease.slot_id)
        trained = time.perf_counter()
        cpu = time.process_time() - asking
        time.sleep(duration)
        reporting = time.process_time()
        reported = time.perf_counter()
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5}, step=0)
        ending = time.perf_counter()
        trial.status = keras_tuner.engine.trial.TrialStatus.COMPLETED
        oracle.end_trial(trial)
        ended = time.perf_counter()
        cpu += time.process_time() - reporting
        timings.append((trained - asked, ending - reported, ended - ending, cpu))
    out.put(timings)  # type: ignore[attr-defined]
    store.dispose()


@contextlib.contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'nas.db'}"
        return
    with postgres_database() as url:
        yield url


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--trials", type=int, default=20, help="trials per process")
    parser.add_argument(
        "--trial-seconds",
        type=float,
        default=2.0,
        help="mean training time of a trial (0: the stress scenario, no training)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds the trials' durations")
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nas-sched-") as temp:
        folder = Path(temp)
        photos = copy_flowers_slice(folder / "data" / "flowers", per_class=4)
        with database(args.database, folder) as url:
            settings = Settings(
                database_url=url,
                artifacts_dir=folder / "artifacts",
                cache_dir=folder / "cache",
                data_roots=[photos.parent],
            )
            store = create_store(url)
            migrate(store.engine)
            total = args.processes * args.trials
            store.create_search(search_spec(photos, total), trials_planned=total, owner="bench")
            store.dispose()
            context = multiprocessing.get_context("spawn")
            start = context.Barrier(args.processes)
            out = context.Queue()
            slots = [
                context.Process(
                    target=slot_main,
                    args=(
                        settings,
                        number,
                        trial_durations(args.trial_seconds, args.trials, args.seed, number),
                        start,
                        out,
                    ),
                )
                for number in range(args.processes)
            ]
            for slot in slots:
                slot.start()
            per_slot: list[Timings] = [out.get() for _ in slots]
            for slot in slots:
                slot.join()
    print(scenario(args, total))
    report(per_slot)


def scenario(args: argparse.Namespace, total: int) -> str:
    """The first line printed: which scenario the figures are of."""
    where = f"{args.processes} slots on {args.database}, {total} trials"
    if args.trial_seconds == 0:
        queued = ", so the steps queue for the search's lock" if args.processes > 1 else ""
        return (
            f"STRESS scenario (not the goal's case): {where}, no training: each slot asks "
            f"again as soon as it ended a trial{queued}"
        )
    low, high = 0.5 * args.trial_seconds, 1.5 * args.trial_seconds
    return (
        f"REALISTIC scenario (the goal's case): {where}, trials training {low:g} to {high:g} s "
        f"(seed {args.seed}), every slot asking for its first trial at once"
    )


def report(per_slot: list[Timings]) -> None:
    """Median and p95 of each transaction, and of the slots' first asks, made at once; the
    slots' CPU time in them."""
    timings = [timing for slot in per_slot for timing in slot]
    columns = {
        "ask": [ask for ask, _, _, _ in timings],
        "report": [reported for _, reported, _, _ in timings],
        "end": [end for _, _, end, _ in timings],
        "ask + end": [ask + end for ask, _, end, _ in timings],
        "first ask": [slot[0][0] for slot in per_slot if slot],
    }
    for name, values in columns.items():
        median, p95 = statistics.median(values) * 1000, percentile(values, 0.95) * 1000
        print(f"  {name:>9}: median {median:6.1f} ms, p95 {p95:6.1f} ms")
    # What the slot's own process spent, whatever else the machine runs: a busy machine
    # stretches the times above, and each step waits for the one holding the lock.
    cpu = statistics.median(cpu for _, _, _, cpu in timings) * 1000
    print(f"  CPU of a slot's process in ask + report + end: median {cpu:.1f} ms")


if __name__ == "__main__":
    main()
