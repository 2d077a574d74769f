"""50 clients poll a running search's status and leaderboard while it trains, then a finished one.

Each client has a token of its own (as 50 users would) and polls once per ``--interval``
seconds, as a dashboard or ``nas watch`` does (``--interval 0``: as fast as it can). Users
open their dashboards at different moments, so each client starts at a random point of the
interval; ``--lockstep`` starts them all at once instead, every poll then a burst of 50. The
clients poll twice, one phase after the other on the same training search: first asking for
the whole answer each time, then revalidating it (If-None-Match with the last ETag, a 304
while the search did not change), as the dashboard and ``nas watch`` do. Prints latency
percentiles, errors and the API's CPU per request of each phase, against a baseline of one
client polling the same search in the same run. Usage: python -m benchmarks.api_load [DATA_DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import resource
import statistics
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import FLOWERS, running_service
from nas.core.store import create_store
from tests.support.seeding import seed_finished_search


@dataclass
class Tally:
    """Latencies (seconds) and errors of every request of a load run."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: Answers that were 304 Not Modified.
    unchanged: int = 0


@dataclass(frozen=True)
class Polling:
    """How the clients poll: every ``interval`` seconds for ``seconds``, in lockstep or not,
    revalidating their last copy or not."""

    interval: float
    seconds: float
    lockstep: bool
    revalidate: bool = False


async def poll(
    client: httpx.AsyncClient,
    search_id: str,
    polling: Polling,
    start_in: float,
    until: float,
    tally: Tally,
) -> None:
    """After ``start_in`` seconds, poll the search's status, then its leaderboard, once per
    ``polling.interval``, until ``until``."""
    paths = (f"/v1/searches/{search_id}", f"/v1/searches/{search_id}/leaderboard")
    tags: dict[str, str] = {}
    await asyncio.sleep(start_in)
    while (turn_started := time.monotonic()) < until:
        for path in paths:
            conditional = {"If-None-Match": tags[path]} if path in tags else {}
            started = time.perf_counter()
            try:
                response = await client.get(path, headers=conditional)
                if response.status_code == 304:
                    tally.unchanged += 1
                elif response.status_code != 200:
                    tally.errors.append(f"{response.status_code} {response.text[:100]}")
                elif polling.revalidate and "etag" in response.headers:
                    tags[path] = response.headers["etag"]
            except httpx.HTTPError as error:
                tally.errors.append(repr(error))
            tally.latencies.append(time.perf_counter() - started)
        await asyncio.sleep(max(0.0, turn_started + polling.interval - time.monotonic()))


async def load(base_url: str, tokens: list[str], search_id: str, polling: Polling) -> Tally:
    """One polling client per token, for ``polling.seconds``.

    The clients are made before the clock starts: making one takes milliseconds of this
    process's CPU, which would otherwise show up as the latency of the requests in flight."""
    tally = Tally()
    spread = 0.0 if polling.lockstep else polling.interval
    draws = random.Random(0)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
                )
            )
            for token in tokens
        ]
        until = time.monotonic() + polling.seconds
        await asyncio.gather(
            *(
                poll(client, search_id, polling, draws.uniform(0.0, spread), until, tally)
                for client in clients
            )
        )
    return tally


@dataclass(frozen=True)
class CpuClock:
    """CPU seconds used so far by the API process, by this process (the clients) and by the
    whole machine, and the machine's elapsed CPU seconds (busy or idle) over all cores."""

    api: float
    clients: float
    machine_busy: float
    machine_total: float

    @classmethod
    def read(cls, api_pid: int) -> CpuClock:
        tick = os.sysconf("SC_CLK_TCK")
        # /proc/PID/stat: utime and stime are the 14th and 15th fields, after "(comm)".
        fields = Path(f"/proc/{api_pid}/stat").read_text().rsplit(")", 1)[1].split()
        own = resource.getrusage(resource.RUSAGE_SELF)
        cpu = [int(value) for value in Path("/proc/stat").read_text().split()[1:9]]
        idle = cpu[3] + cpu[4]  # idle and iowait
        return cls(
            api=(int(fields[11]) + int(fields[12])) / tick,
            clients=own.ru_utime + own.ru_stime,
            machine_busy=(sum(cpu) - idle) / tick,
            machine_total=sum(cpu) / tick,
        )


def percentile(values: list[float], q: int) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


@dataclass(frozen=True)
class Phase:
    """One load run: its name, what it measured and the CPU clocks around it."""

    name: str
    tally: Tally
    seconds: float
    before: CpuClock
    after: CpuClock

    def row(self) -> str:
        values = self.tally.latencies
        millis = [percentile(values, q) * 1e3 for q in (50, 95, 99)] + [max(values) * 1e3]
        unchanged = self.tally.unchanged / len(values)
        return (
            f"{self.name:>38} {len(values):>8} {len(values) / self.seconds:>8.1f} "
            f"{len(self.tally.errors):>8} {unchanged:>8.0%} "
            + " ".join(f"{v:>8.1f}" for v in millis)
        )

    def cpu(self) -> str:
        requests = len(self.tally.latencies)
        before, after = self.before, self.after
        busy = (after.machine_busy - before.machine_busy) / (
            after.machine_total - before.machine_total
        )
        return (
            f"{self.name}: CPU per request: API process "
            f"{(after.api - before.api) / requests * 1e3:.1f} ms, clients "
            f"{(after.clients - before.clients) / requests * 1e3:.1f} ms; all "
            f"{os.cpu_count()} cores {busy:.0%} busy (API, clients and the training search)"
        )


def measure(name: str, api_pid: int, run: Coroutine[Any, Any, Tally], seconds: float) -> Phase:
    """Run one load phase (``run``, ``seconds`` long) and clock the CPU around it."""
    before = CpuClock.read(api_pid)
    tally = asyncio.run(run)
    return Phase(name, tally, seconds, before, CpuClock.read(api_pid))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data_dir", nargs="?", type=Path, default=FLOWERS)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    parser.add_argument(
        "--lockstep", action="store_true", help="all clients poll at the same moments"
    )
    args = parser.parse_args()
    with running_service(args.data_dir) as service:
        # A finished search of the same owner, 30 trials of 20 epochs: what most dashboards
        # and `nas watch`es poll is a search that no longer changes. Seeded before the
        # training search is queued, so that the seeding claims its own.
        store = create_store(service.settings.database_url)
        finished_id = seed_finished_search(
            store, owner="benchmark", dataset_path=str(args.data_dir), trials=30, epochs=20
        )
        store.dispose()
        search_id = service.submit(
            {
                "dataset": {"path": str(args.data_dir), "image_size": 64},
                "space": {"max_conv_blocks": 4},
                "tuner": {"max_trials": 50, "epochs": 10},
            }
        )
        service.start_worker()
        base_url = str(service.client.base_url)
        tokens = service.issue_tokens(args.clients)
        time.sleep(15)  # let training start
        board = service.client.get(f"/v1/searches/{search_id}/leaderboard").json()
        assert service.client.get(f"/v1/searches/{search_id}").json()["status"] == "running"
        one = Polling(args.interval, 10.0, lockstep=True)
        phases = [
            measure(
                "1 client (baseline)",
                service.api.pid,
                load(base_url, tokens[:1], search_id, one),
                one.seconds,
            )
        ]
        for revalidate in (False, True):
            polling = Polling(args.interval, args.seconds, args.lockstep, revalidate)
            name = f"{args.clients} clients, {'ETags' if revalidate else 'no ETags'}"
            run = load(base_url, tokens, search_id, polling)
            phases.append(measure(name, service.api.pid, run, polling.seconds))
        polling = Polling(args.interval, args.seconds, args.lockstep, revalidate=True)
        phases.append(
            measure(
                f"{args.clients} clients, ETags, unchanged search",
                service.api.pid,
                load(base_url, tokens, finished_id, polling),
                polling.seconds,
            )
        )
        trials = len(service.client.get(f"/v1/searches/{search_id}/leaderboard").json()["trials"])
    grew = f"{len(board['trials'])} to {trials}"
    print(f"the search trained throughout; its leaderboard grew from {grew} trials")
    start = "all at once" if args.lockstep else "each from a random point of the interval"
    print(f"each client polls status and leaderboard every {args.interval:g} s, {start}")
    header = ("requests", "req/s", "errors", "304s", "p50 ms", "p95 ms", "p99 ms", "max ms")
    print(f"{'':>38} " + " ".join(f"{name:>8}" for name in header))
    for phase in phases:
        print(phase.row())
    for phase in phases[1:]:
        print(phase.cpu())
        if phase.tally.errors:
            print("  first errors:", phase.tally.errors[:5])


if __name__ == "__main__":
    main()
