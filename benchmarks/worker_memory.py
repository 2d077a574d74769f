"""Memory of a worker across 20 small searches in a row.

Prints the worker process's resident memory after its first search (the baseline) and after
its last, and their ratio. Usage: python -m benchmarks.worker_memory [DATA_DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.harness import FLOWERS, running_service


def resident_mib(pid: int) -> float:
    """Resident set size of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data_dir", nargs="?", type=Path, default=FLOWERS)
    parser.add_argument("--searches", type=int, default=20)
    args = parser.parse_args()
    body = {
        "dataset": {"path": str(args.data_dir), "image_size": 32, "max_images_per_class": 20},
        "space": {"max_conv_blocks": 3},
        "tuner": {"max_trials": 2, "epochs": 1},
    }
    with running_service(args.data_dir) as service:
        worker = service.start_worker()
        readings = []
        for index in range(args.searches):
            search = service.wait_for(service.submit(body))
            assert search["status"] == "succeeded", search
            readings.append(resident_mib(worker.pid))
            print(f"search {index + 1:>2}: worker RSS {readings[-1]:.1f} MiB", flush=True)
    print(f"after the first search: {readings[0]:.1f} MiB")
    print(f"after search {len(readings)}: {readings[-1]:.1f} MiB")
    print(f"ratio last/first: {readings[-1] / readings[0]:.2f}")


if __name__ == "__main__":
    main()
