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
from dataclasses import dataclass
from types import FrameType

from nas.core.settings import Settings
from nas.core.store import Lease, LeaseLostError, SearchStatus, Store, StoreUnavailableError
from nas.worker.process import EXIT_INTERRUPTED, EXIT_LEASE_LOST, EXIT_OK, search_process_main

log = logging.getLogger(__name__)

#: How long a search process may take to stop after SIGTERM before it is killed.
STOP_TIMEOUT_SECONDS = 30.0
#: How often a running search is checked for a cancel request.
CANCEL_POLL_SECONDS = 1.0

Process = multiprocessing.process.BaseProcess


@dataclass
class _Supervision:
    """What happened while one search process ran."""

    cancel_seen_at: float | None = None
    terminated_at: float | None = None
    lease_lost: bool = False
    #: The search process closed the search itself and is only exiting.
    closed: bool = False


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
                lease = self._next_lease()
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

    def _next_lease(self) -> Lease | None:
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
        state = _Supervision()
        next_beat = next_cancel_check = 0.0
        while process.is_alive():
            process.join(timeout=0.2)
            now = time.monotonic()
            if not process.is_alive():
                break
            if state.closed or state.lease_lost:
                # A process that closed its search is only exiting; one whose lease another
                # worker took must stop writing at once.
                process.join(timeout=STOP_TIMEOUT_SECONDS if state.closed else 2.0)
                if process.is_alive():
                    why = "ended but its process hangs" if state.closed else "lost its lease"
                    log.error("search %s %s; killing the process", lease.search_id, why)
                    _kill(process)
                break
            if self._signals >= 2:
                _kill(process)
                break
            if self._stop.is_set() and state.terminated_at is None:
                log.info("stopping: interrupting search %s", lease.search_id)
                _terminate(process, state, now)
            if now >= next_beat:
                next_beat = now + self.settings.heartbeat_seconds
                self._heartbeat(lease, state)
            if state.cancel_seen_at is None and now >= next_cancel_check:
                next_cancel_check = now + CANCEL_POLL_SECONDS
                if self.store.is_cancel_requested(lease.search_id):
                    state.cancel_seen_at = now
            if (
                state.cancel_seen_at is not None
                and state.terminated_at is None
                and now - state.cancel_seen_at >= self.settings.cancel_grace_seconds
            ):
                log.info("search %s did not stop at an epoch end; interrupting it", lease.search_id)
                _terminate(process, state, now)
            if state.terminated_at is not None and now - state.terminated_at > STOP_TIMEOUT_SECONDS:
                log.warning("search %s ignored SIGTERM; killing it", lease.search_id)
                _kill(process)
        self._after_exit(lease, process.exitcode, state)

    def _heartbeat(self, lease: Lease, state: _Supervision) -> None:
        try:
            self.store.renew_lease(lease, self.settings.lease_seconds)
            self.store.worker_heartbeat(self.id, lease.search_id)
        except LeaseLostError:
            state.closed = self._closed_by_its_process(lease)
            state.lease_lost = not state.closed

    def _closed_by_its_process(self, lease: Lease) -> bool:
        """Whether the lease ended because the search process closed the search: it is not
        lost then, the process is only still exiting."""
        search = self.store.get_search(lease.search_id)
        return (
            search is not None
            and search.status.terminal
            and search.attempt == lease.attempt
            and search.attempts[-1].worker_id == self.id
        )

    def _after_exit(self, lease: Lease, exitcode: int | None, state: _Supervision) -> None:
        if exitcode in (EXIT_OK, EXIT_LEASE_LOST) or state.lease_lost:
            return
        search = self.store.get_search(lease.search_id)
        if search is None or search.status != SearchStatus.RUNNING or search.worker_id != self.id:
            return  # the search process closed it itself
        if state.cancel_seen_at is not None:
            self._close(lease, SearchStatus.CANCELLED, None)
        elif exitcode == EXIT_INTERRUPTED or self._stop.is_set():
            self._give_back(lease)
        else:
            how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else exitcode
            self._close(lease, SearchStatus.FAILED, f"the search process died (exit {how})")

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


def _terminate(process: Process, state: _Supervision, now: float) -> None:
    process.terminate()
    state.terminated_at = now


def _kill(process: Process) -> None:
    if process.is_alive():
        process.kill()
    process.join()
