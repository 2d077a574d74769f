"""Signals inside a search process: SIGTERM interrupts training, the parent's death kills it."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from worker.tuning import SearchInterrupted

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when the worker that started it dies, so a
    killed worker leaves no orphan training under a lease that is about to expire."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


class Interruptions:
    """SIGTERM raises SearchInterrupted while training is armed; elsewhere it is remembered
    and raised when training is next armed. SIGINT (a terminal's Ctrl-C) is left to the
    worker, which decides what happens to the search."""

    def __init__(self) -> None:
        self.requested = False
        self._armed = False
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _on_sigterm(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True
        if self._armed:
            self._armed = False
            raise SearchInterrupted

    @contextmanager
    def armed(self) -> Iterator[None]:
        """A block that SIGTERM interrupts."""
        if self.requested:
            raise SearchInterrupted
        self._armed = True
        try:
            yield
        finally:
            self._armed = False
