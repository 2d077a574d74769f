"""Starting and stopping ``nas`` processes: used by the demo and the end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from service.settings import Settings

NAS = str(Path(sys.executable).with_name("nas"))
# Without the installed script (the project on PYTHONPATH only), the same app runs as a module.
NAS_COMMAND = [NAS] if Path(NAS).exists() else [sys.executable, "-m", "service"]
T = TypeVar("T")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a ``nas`` process these settings."""
    return os.environ | {
        "NAS_DATABASE_URL": settings.database_url,
        "NAS_ARTIFACTS_DIR": str(settings.artifacts_dir),
        "NAS_CACHE_DIR": str(settings.cache_dir),
        "NAS_DATA_ROOTS": os.pathsep.join(str(root) for root in settings.data_roots),
        "NAS_DATA_BUCKETS": ",".join(settings.data_buckets),
        "NAS_TF_FLOWERS_URL": settings.tf_flowers_url,
        "NAS_DOWNLOAD_TIMEOUT_SECONDS": str(settings.download_timeout_seconds),
        "NAS_HEARTBEAT_SECONDS": str(settings.heartbeat_seconds),
        "NAS_LEASE_SECONDS": str(settings.lease_seconds),
        "NAS_POLL_INTERVAL_SECONDS": str(settings.poll_interval_seconds),
        "NAS_BACKEND": settings.backend,
        "NAS_PARALLEL_TRIALS": str(settings.parallel_trials),
        "NAS_FULL_BATCHES": str(settings.full_batches).lower(),
        "NAS_LIMIT_MAX_PARAMS": str(settings.limit_max_params),
        "PYTHONUNBUFFERED": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def start_nas(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``nas ARGS`` with its output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as handle:
        return subprocess.Popen(
            [*NAS_COMMAND, *args], env=env, stdout=handle, stderr=subprocess.STDOUT
        )


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM, then SIGKILL if it has not exited in time; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.3) -> T:
    """Poll ``predicate`` until it returns something truthy, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
