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

from service.settings import Settings
from service.store import Lease, LeaseLostError, SearchStatus, Store
from worker.process import EXIT_LEASE_LOST, search_process_main

log = logging.getLogger(__name__)

#: How long a search process may take to stop by itself after a cancel.
CANCEL_GRACE_SECONDS = 5.0
MAX_ATTEMPTS = 3


class Worker:
    """Claims the oldest queued search, runs it in a child process, heartbeats its lease.

    SIGTERM or SIGINT: stop taking searches, stop the running one, give it back to the
    queue and return. A second signal kills the search process at once.
    """

    def __init__(self, settings: Settings, store: Store, worker_id: str | None = None) -> None:
        self.settings = settings
        self.store = store
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._signals = 0

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
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
            requeued = self.store.requeue_expired(MAX_ATTEMPTS)
            if requeued:
                log.warning("requeued searches whose worker stopped answering: %s", requeued)
            lease = self.store.claim_next(self.id, self.settings.lease_seconds)
            if lease is None:
                self.store.worker_heartbeat(self.id, None)
                if exit_when_idle:
                    break
                self._stop.wait(self.settings.poll_interval_seconds)
                continue
            self.supervise(lease)
            done += 1
        self.store.worker_stopped(self.id)
        log.info("worker %s stopped after %d searches", self.id, done)
        return done

    def supervise(self, lease: Lease) -> None:
        """Run one claimed search to its end, renewing the lease meanwhile."""
        log.info("claimed search %s (attempt %d)", lease.search_id, lease.attempt)
        context = multiprocessing.get_context("spawn")
        process = context.Process(
            target=search_process_main,
            args=(self.settings, lease),
            name=f"search-{lease.search_id[:8]}",
        )
        process.start()
        next_beat = 0.0
        cancel_deadline: float | None = None
        lease_lost = False
        while process.is_alive():
            process.join(timeout=0.5)
            now = time.monotonic()
            if self._stop.is_set():
                break
            if now >= next_beat and process.is_alive():
                next_beat = now + self.settings.heartbeat_seconds
                try:
                    state = self.store.renew_lease(lease, self.settings.lease_seconds)
                except LeaseLostError:
                    log.error("lost the lease of search %s; stopping it", lease.search_id)
                    lease_lost = True
                    break
                self.store.worker_heartbeat(self.id, lease.search_id)
                if state.cancel_requested and cancel_deadline is None:
                    cancel_deadline = now + CANCEL_GRACE_SECONDS
            if cancel_deadline is not None and now >= cancel_deadline:
                log.info("search %s did not stop after cancel; killing it", lease.search_id)
                _kill(process)
                self._close(lease, SearchStatus.CANCELLED, "cancelled while a trial was running")
                return
        if process.is_alive():
            self._stop_process(process)
            if not lease_lost:
                self._give_back(lease)
            return
        self._after_exit(lease, process.exitcode)

    def _stop_process(self, process: multiprocessing.process.BaseProcess) -> None:
        process.terminate()
        deadline = time.monotonic() + 10.0
        while process.is_alive() and time.monotonic() < deadline and self._signals < 2:
            process.join(timeout=0.2)
        _kill(process)

    def _give_back(self, lease: Lease) -> None:
        try:
            self.store.release(lease)
            log.info("gave search %s back to the queue", lease.search_id)
        except LeaseLostError:
            pass

    def _after_exit(self, lease: Lease, exitcode: int | None) -> None:
        if exitcode in (0, EXIT_LEASE_LOST):
            return
        search = self.store.get_search(lease.search_id)
        if search is None or search.status != SearchStatus.RUNNING:
            return  # the search process closed it (failed with its own message)
        how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"code {exitcode}"
        self._close(lease, SearchStatus.FAILED, f"the search process died ({how})")

    def _close(self, lease: Lease, status: SearchStatus, error: str | None) -> None:
        try:
            self.store.finish_search(lease, status, error=error)
        except LeaseLostError:
            log.warning("search %s was taken over before it could be closed", lease.search_id)


def _kill(process: multiprocessing.process.BaseProcess) -> None:
    if process.is_alive():
        process.kill()
    process.join()
