"""50 clients poll a running search's status and leaderboard while it trains.

Each client has a token of its own (as 50 users would) and polls once per ``--interval``
seconds, as a dashboard or ``nas watch`` does (``--interval 0``: as fast as it can). Users
open their dashboards at different moments, so each client starts at a random point of the
interval; ``--lockstep`` starts them all at once instead, every poll then a burst of 50. Prints
latency percentiles and errors under load, against a baseline of one client polling the same
search in the same run. Usage: python -m benchmarks.api_load [DATA_DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks.harness import FLOWERS, running_service


@dataclass
class Tally:
    """Latencies (seconds) and errors of every request of a load run."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Polling:
    """How the clients poll: every ``interval`` seconds for ``seconds``, in lockstep or not."""

    interval: float
    seconds: float
    lockstep: bool


async def poll(
    base_url: str,
    token: str,
    search_id: str,
    interval: float,
    start_in: float,
    until: float,
    tally: Tally,
) -> None:
    """After ``start_in`` seconds, poll the search's status, then its leaderboard, once per
    ``interval``, until ``until``."""
    paths = (f"/v1/searches/{search_id}", f"/v1/searches/{search_id}/leaderboard")
    headers = {"Authorization": f"Bearer {token}"}
    await asyncio.sleep(start_in)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
        while (turn_started := time.monotonic()) < until:
            for path in paths:
                started = time.perf_counter()
                try:
                    response = await client.get(path)
                    if response.status_code != 200:
                        tally.errors.append(f"{response.status_code} {response.text[:100]}")
                except httpx.HTTPError as error:
                    tally.errors.append(repr(error))
                tally.latencies.append(time.perf_counter() - started)
            await asyncio.sleep(max(0.0, turn_started + interval - time.monotonic()))


async def load(base_url: str, tokens: list[str], search_id: str, polling: Polling) -> Tally:
    """One polling client per token, for ``polling.seconds``."""
    tally = Tally()
    spread = 0.0 if polling.lockstep else polling.interval
    draws = random.Random(0)
    until = time.monotonic() + polling.seconds
    await asyncio.gather(
        *(
            poll(
                base_url,
                token,
                search_id,
                polling.interval,
                draws.uniform(0.0, spread),
                until,
                tally,
            )
            for token in tokens
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
        baseline = asyncio.run(
            load(base_url, tokens[:1], search_id, Polling(args.interval, 10.0, lockstep=True))
        )
        before = CpuClock.read(service.api.pid)
        loaded = asyncio.run(
            load(base_url, tokens, search_id, Polling(args.interval, args.seconds, args.lockstep))
        )
        after = CpuClock.read(service.api.pid)
        trials = len(service.client.get(f"/v1/searches/{search_id}/leaderboard").json()["trials"])
    grew = f"{len(board['trials'])} to {trials}"
    print(f"the search trained throughout; its leaderboard grew from {grew} trials")
    start = "all at once" if args.lockstep else "each from a random point of the interval"
    print(f"each client polls status and leaderboard every {args.interval:g} s, {start}")
    header = ("requests", "req/s", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms")
    print(f"{'':>22} " + " ".join(f"{name:>8}" for name in header))
    runs = (
        ("1 client (baseline)", baseline, 10.0),
        (f"{args.clients} clients", loaded, args.seconds),
    )
    for name, tally, seconds in runs:
        values = tally.latencies
        millis = [percentile(values, q) * 1e3 for q in (50, 95, 99)] + [max(values) * 1e3]
        print(
            f"{name:>22} {len(values):>8} {len(values) / seconds:>8.1f} {len(tally.errors):>8} "
            + " ".join(f"{v:>8.1f}" for v in millis)
        )
    ratio = percentile(loaded.latencies, 99) / percentile(baseline.latencies, 99)
    print(f"p99 ratio, {args.clients} clients / 1 client: {ratio:.1f}x")
    requests = len(loaded.latencies)
    busy = (after.machine_busy - before.machine_busy) / (after.machine_total - before.machine_total)
    print(
        f"CPU per request under load: API process {(after.api - before.api) / requests * 1e3:.1f}"
        f" ms, clients {(after.clients - before.clients) / requests * 1e3:.1f} ms; "
        f"all {os.cpu_count()} cores {busy:.0%} busy (API, clients and the training search)"
    )
    if loaded.errors:
        print("first errors:", loaded.errors[:5])


if __name__ == "__main__":
    main()
