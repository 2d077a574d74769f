"""The worker: offers ``NAS_PARALLEL_TRIALS`` slots to the running searches of the store it
shares with workers on other hosts, runs each slot (and each search's finishing step it
takes) in a child process, and heartbeats their leases."""

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
from typing import Any

from nas.core.settings import Settings
from nas.core.store import (
    Lease,
    LeaseLostError,
    SearchStatus,
    SlotLease,
    Store,
    StoreUnavailableError,
)
from nas.worker.process import finishing_process_main, slot_process_main
from nas.worker.supervision import (
    CheckCancel,
    Close,
    GiveBack,
    Heartbeat,
    Kill,
    LeaveSlot,
    Step,
    SupervisionState,
    Terminate,
    after_cancel_check,
    after_exit,
    after_lease_lost,
    after_slot_exit,
    after_slot_lease_lost,
    exit_settles_it,
    next_actions,
)

log = logging.getLogger(__name__)

#: How long the worker sleeps between two looks at its processes.
TICK_SECONDS = 0.2

Process = multiprocessing.process.BaseProcess


@dataclass
class Child:
    """A process the worker supervises: one slot's, or one finishing step's."""

    process: Process
    lease: SlotLease | Lease
    state: SupervisionState

    @property
    def search_id(self) -> str:
        return self.lease.search_id

    @property
    def name(self) -> str:
        if isinstance(self.lease, SlotLease):
            return f"slot {self.lease.slot_id[:8]} of search {self.search_id}"
        return f"finishing step of search {self.search_id}"


class Worker:
    """Takes trials of running searches into its free slots, and finishing steps.

    SIGTERM or SIGINT: take nothing more, interrupt every process and give its trial (or
    finishing step) back at once for another worker, then return. A second signal kills
    the processes without waiting.
    """

    def __init__(self, settings: Settings, store: Store, worker_id: str | None = None) -> None:
        self.settings = settings
        self.store = store
        self.hostname = socket.gethostname()
        self.id = worker_id or f"{self.hostname}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.children: list[Child] = []
        self._stop = threading.Event()
        self._signals = 0

    def request_stop(self, _signum: int | None = None, _frame: FrameType | None = None) -> None:
        """Ask the worker to stop; safe from a signal handler."""
        self._signals += 1
        self._stop.set()

    def run(self, *, exit_when_idle: bool = False) -> None:
        """Work until stopped (or, with ``exit_when_idle``, until no search needs it)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.request_stop)
        slots = self.settings.parallel_trials
        self.store.register_worker(
            self.id,
            hostname=self.hostname,
            pid=os.getpid(),
            backend=self.settings.backend,
            slots=slots,
        )
        log.info("worker %s ready: %d slot(s), %s backend", self.id, slots, self.settings.backend)
        next_look = 0.0
        while not (self._stop.is_set() and not self.children):
            now = time.monotonic()
            self.supervise(now)
            if not self._stop.is_set() and now >= next_look:
                next_look = now + self.settings.poll_interval_seconds
                took = self.take_work()
                if exit_when_idle and not took and not self.children:
                    break
            time.sleep(TICK_SECONDS)
        self.store.worker_stopped(self.id)
        log.info("worker %s stopped", self.id)

    def take_work(self) -> bool:
        """Take back what dead workers held, then fill the free slots. Returns whether
        anything was taken."""
        took = False
        try:
            if reaped := self.store.reap_expired(self.settings.max_attempts):
                log.warning("took back the slots and steps of dead workers in %s", reaped)
            self.store.worker_heartbeat(self.id)
            while len(self.children) < self.settings.parallel_trials:
                lease = self.claim()
                if lease is None:
                    break
                self.start(lease)
                took = True
        except StoreUnavailableError:
            log.warning("database unavailable; the worker waits")
            return True
        return took

    def claim(self) -> SlotLease | Lease | None:
        """A finishing step that waits for a worker, else a slot in the search that needs one
        most; None when nothing waits."""
        seconds = self.settings.lease_seconds
        finishing = self.store.claim_finishing(self.id, seconds)
        if finishing is not None:
            return finishing
        return self.store.join_next(self.id, hostname=self.hostname, lease_seconds=seconds)

    def start(self, lease: SlotLease | Lease) -> None:
        """Start the process of a slot or a finishing step."""
        main: Any = slot_process_main if isinstance(lease, SlotLease) else finishing_process_main
        process = multiprocessing.get_context("spawn").Process(
            target=main, args=(self.settings, lease, os.getpid()), name=f"{lease.search_id[:8]}"
        )
        process.start()
        child = Child(
            process, lease, SupervisionState(interrupts_on_cancel=isinstance(lease, SlotLease))
        )
        log.info("started the %s", child.name)
        self.children.append(child)

    def supervise(self, now: float) -> None:
        """Settle the processes that exited; heartbeat, check and stop the others."""
        for child in list(self.children):
            if child.process.is_alive():
                step = next_actions(child.state, self._signals, now, self.settings)
                child.state = self._carry_out(step, child, now)
            if not child.process.is_alive():
                child.process.join()
                self.children.remove(child)
                self.settle(child.lease, child.process.exitcode, child.state)

    def _carry_out(self, step: Step, child: Child, now: float) -> SupervisionState:
        state = step.state
        for action in step.actions:
            match action:
                case Heartbeat():
                    state = self._heartbeat(child, state)
                case CheckCancel():
                    requested = self.store.is_cancel_requested(child.search_id)
                    follow_up = after_cancel_check(state, requested, now, self.settings)
                    state = self._carry_out(follow_up, child, now)
                case Terminate(why=why):
                    log.info("the %s %s; interrupting it", child.name, why)
                    child.process.terminate()
                case Kill(why=why):
                    log.warning("the %s %s; killing it", child.name, why)
                    child.process.kill()
        return state

    def _heartbeat(self, child: Child, state: SupervisionState) -> SupervisionState:
        lease, seconds = child.lease, self.settings.lease_seconds
        try:
            if isinstance(lease, SlotLease):
                self.store.renew_slot(lease, seconds)
            else:
                self.store.renew_lease(lease, seconds)
        except LeaseLostError:
            search = self.store.get_search(child.search_id)
            if isinstance(lease, SlotLease):
                return after_slot_lease_lost(state, search)
            return after_lease_lost(state, search, lease)
        except StoreUnavailableError:
            log.warning("database unavailable; the %s is not renewed", child.name)
        return state

    def settle(
        self, lease: SlotLease | Lease, exitcode: int | None, state: SupervisionState
    ) -> None:
        """Do what the exit of a process with ``exitcode`` means for its slot or finishing
        step."""
        if isinstance(lease, SlotLease):
            decision = after_slot_exit(exitcode, state)
            if isinstance(decision, LeaveSlot):
                self._leave(lease, died=decision.died)
            return
        search = (
            None if exit_settles_it(exitcode, state) else self.store.get_search(lease.search_id)
        )
        match after_exit(exitcode, state, search, lease, stopping=self._stop.is_set()):
            case GiveBack():
                self._give_back(lease)
            case Close(status=status, error=error):
                self._close(lease, status, error)

    def _leave(self, lease: SlotLease, *, died: bool) -> None:
        try:
            self.store.leave_slot(lease, died=died, max_attempts=self.settings.max_attempts)
            log.info("left slot %s of search %s", lease.slot_id[:8], lease.search_id)
        except LeaseLostError:
            log.warning("slot %s of search %s was gone already", lease.slot_id, lease.search_id)

    def _give_back(self, lease: Lease) -> None:
        try:
            self.store.release(lease)
            log.info("gave the finishing step of search %s back", lease.search_id)
        except LeaseLostError:
            log.warning("search %s was taken over before it could be given back", lease.search_id)

    def _close(self, lease: Lease, status: SearchStatus, error: str | None) -> None:
        try:
            self.store.finish_search(lease, status, error=error)
        except LeaseLostError:
            log.warning("search %s was taken over before it could be closed", lease.search_id)
