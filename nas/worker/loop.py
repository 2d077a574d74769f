"""The worker: claims searches from the queue and supervises one search process at a time."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
import uuid
from types import FrameType

from nas.core.settings import Settings
from nas.core.store import Lease, LeaseLostError, SearchStatus, Store, StoreUnavailableError
from nas.worker.process import search_process_main
from nas.worker.supervision import (
    AwaitExit,
    CheckCancel,
    Close,
    GiveBack,
    Heartbeat,
    Kill,
    Step,
    SupervisionState,
    Terminate,
    after_cancel_check,
    after_exit,
    after_lease_lost,
    exit_settles_it,
    next_actions,
)

log = logging.getLogger(__name__)

#: How long the supervise loop waits on the search process between two decisions.
TICK_SECONDS = 0.2

Process = multiprocessing.process.BaseProcess


class Worker:
    """Claims the oldest queued search, runs it in a child process, heartbeats its lease.

    SIGTERM or SIGINT: take no more searches, interrupt the running one and give it back to
    the queue (another worker resumes it at once), then return. A second signal kills the
    search process without waiting.
    """

    def __init__(self, settings: Settings, store: Store, worker_id: str | None = None) -> None:
        self.settings = settings
        self.store = store
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._signals = 0

    def request_stop(self, _signum: int | None = None, _frame: FrameType | None = None) -> None:
        """Ask the worker to stop; safe from a signal handler."""
        self._signals += 1
        self._stop.set()

    def run(self, *, max_searches: int | None = None, exit_when_idle: bool = False) -> int:
        """Work until stopped (or after ``max_searches``, or when the queue is empty)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.request_stop)
        self.store.register_worker(
            self.id, hostname=socket.gethostname(), pid=os.getpid(), backend=self.settings.backend
        )
        log.info("worker %s ready (%s backend)", self.id, self.settings.backend)
        done = 0
        while not self._stop.is_set() and (max_searches is None or done < max_searches):
            try:
                lease = self.claim()
            except StoreUnavailableError:
                log.warning("database unavailable; the worker waits")
                self._stop.wait(self.settings.poll_interval_seconds)
                continue
            if lease is None:
                if exit_when_idle:
                    break
                self._stop.wait(self.settings.poll_interval_seconds)
                continue
            self.supervise(lease)
            done += 1
        self.store.worker_stopped(self.id)
        log.info("worker %s stopped after %d searches", self.id, done)
        return done

    def claim(self) -> Lease | None:
        """Requeue searches whose worker stopped answering (failing those out of attempts),
        then claim the oldest queued search; None when the queue is empty."""
        if requeued := self.store.requeue_expired(self.settings.max_attempts):
            log.warning("requeued searches whose worker stopped answering: %s", requeued)
        lease = self.store.claim_next(self.id, self.settings.lease_seconds)
        if lease is None:
            self.store.worker_heartbeat(self.id, None)
        return lease

    def supervise(self, lease: Lease) -> None:
        """Run one claimed search to its end, renewing the lease meanwhile."""
        log.info("claimed search %s (attempt %d)", lease.search_id, lease.attempt)
        process = multiprocessing.get_context("spawn").Process(
            target=search_process_main,
            args=(self.settings, lease, os.getpid()),
            name=f"search-{lease.search_id[:8]}",
        )
        process.start()
        state = SupervisionState()
        while process.is_alive():
            process.join(timeout=TICK_SECONDS)
            now = time.monotonic()
            if not process.is_alive():
                break
            step = next_actions(state, self._signals, now, self.settings)
            state = self._carry_out(step, lease, process, now)
        self.settle(lease, process.exitcode, state)

    def _carry_out(
        self, step: Step, lease: Lease, process: Process, now: float
    ) -> SupervisionState:
        state = step.state
        for action in step.actions:
            match action:
                case Heartbeat():
                    state = self._heartbeat(lease, state)
                case CheckCancel():
                    requested = self.store.is_cancel_requested(lease.search_id)
                    follow_up = after_cancel_check(state, requested, now, self.settings)
                    state = self._carry_out(follow_up, lease, process, now)
                case Terminate(why=why):
                    log.info("search %s %s; interrupting it", lease.search_id, why)
                    process.terminate()
                case Kill(why=why):
                    log.warning("search %s %s; killing it", lease.search_id, why)
                    _kill(process)
                case AwaitExit(timeout=timeout, why=why):
                    process.join(timeout=timeout)
                    if process.is_alive():
                        log.error("search %s %s; killing the process", lease.search_id, why)
                        _kill(process)
        return state

    def _heartbeat(self, lease: Lease, state: SupervisionState) -> SupervisionState:
        try:
            self.store.renew_lease(lease, self.settings.lease_seconds)
            self.store.worker_heartbeat(self.id, lease.search_id)
        except LeaseLostError:
            return after_lease_lost(state, self.store.get_search(lease.search_id), lease)
        return state

    def settle(self, lease: Lease, exitcode: int | None, state: SupervisionState) -> None:
        """Do what the exit of the search process with ``exitcode`` means for its search."""
        search = (
            None if exit_settles_it(exitcode, state) else self.store.get_search(lease.search_id)
        )
        match after_exit(exitcode, state, search, lease, stopping=self._stop.is_set()):
            case GiveBack():
                self._give_back(lease)
            case Close(status=status, error=error):
                self._close(lease, status, error)

    def _give_back(self, lease: Lease) -> None:
        try:
            self.store.release(lease)
            log.info("gave search %s back to the queue", lease.search_id)
        except LeaseLostError:
            log.warning("search %s was taken over before it could be given back", lease.search_id)

    def _close(self, lease: Lease, status: SearchStatus, error: str | None) -> None:
        try:
            self.store.finish_search(lease, status, error=error)
        except LeaseLostError:
            log.warning("search %s was taken over before it could be closed", lease.search_id)


def _kill(process: Process) -> None:
    if process.is_alive():
        process.kill()
    process.join()
