"""Starting and stopping ``nas`` processes: used by the demo and the end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from nas.core.settings import Settings

NAS = str(Path(sys.executable).with_name("nas"))
# Without the installed script (the project on PYTHONPATH only), the same app runs as a module.
NAS_COMMAND = [NAS] if Path(NAS).exists() else [sys.executable, "-m", "nas"]
T = TypeVar("T")


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a ``nas`` process these settings, every one of them."""
    return os.environ | settings.as_env() | {"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def start_nas(
    args: list[str], env: dict[str, str], log: Path, prefix: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """Start ``nas ARGS`` (under the command ``prefix``, such as ``taskset -c 0``) with its
    output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as handle:
        return subprocess.Popen(
            [*prefix, *NAS_COMMAND, *args], env=env, stdout=handle, stderr=subprocess.STDOUT
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
