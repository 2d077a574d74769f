"""Signals inside a slot or finishing process: SIGTERM asks training to stop, the parent's
death kills it."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from types import FrameType

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when the worker that started it dies, so a
    killed worker leaves no orphan training under a lease that is about to expire."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


class Interruptions:
    """Remembers SIGTERM; training polls ``requested`` at every batch and stops there.

    The handler only sets a flag: raising from it could cut a database write in half.
    SIGINT (a terminal's Ctrl-C) is left to the worker, which decides what happens.
    """

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _on_sigterm(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True
