"""50 clients poll a running search's status and leaderboard while it trains.

Prints latency percentiles and errors under load, against a baseline of one client polling
the same search in the same run. Usage: python -m benchmarks.api_load [DATA_DIR]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

import httpx

from benchmarks.harness import FLOWERS, running_service


def poll(
    base_url: str, search_id: str, until: float, latencies: list[float], errors: list[str]
) -> None:
    paths = (f"/v1/searches/{search_id}", f"/v1/searches/{search_id}/leaderboard")
    with httpx.Client(base_url=base_url, timeout=30) as client:
        turn = 0
        while time.monotonic() < until:
            started = time.perf_counter()
            try:
                response = client.get(paths[turn % 2])
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:100]}")
            except httpx.HTTPError as error:
                errors.append(repr(error))
            latencies.append(time.perf_counter() - started)
            turn += 1


def load(
    base_url: str, search_id: str, clients: int, seconds: float
) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    errors: list[str] = []
    until = time.monotonic() + seconds
    threads = [
        threading.Thread(target=poll, args=(base_url, search_id, until, latencies, errors))
        for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors


def percentile(values: list[float], q: float) -> float:
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
        time.sleep(15)  # let training start
        board = service.client.get(f"/v1/searches/{search_id}/leaderboard").json()
        assert service.client.get(f"/v1/searches/{search_id}").json()["status"] == "running"
        baseline, base_errors = load(base_url, search_id, 1, 10)
        loaded, errors = load(base_url, search_id, args.clients, args.seconds)
        trials = len(service.client.get(f"/v1/searches/{search_id}/leaderboard").json()["trials"])
    grew = f"{len(board['trials'])} to {trials}"
    print(f"the search trained throughout; its leaderboard grew from {grew} trials")
    header = ("requests", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms")
    print(f"{'':>22} " + " ".join(f"{name:>8}" for name in header))
    runs = (
        ("1 client (baseline)", baseline, base_errors),
        (f"{args.clients} clients", loaded, errors),
    )
    for name, values, errs in runs:
        millis = [percentile(values, q) * 1e3 for q in (50, 95, 99)] + [max(values) * 1e3]
        print(
            f"{name:>22} {len(values):>8} {len(errs):>8} " + " ".join(f"{v:>8.1f}" for v in millis)
        )
    ratio = percentile(loaded, 99) / percentile(baseline, 99)
    print(f"p99 ratio, {args.clients} clients / 1 client: {ratio:.1f}x")
    if errors:
        print("first errors:", errors[:5])


if __name__ == "__main__":
    main()
