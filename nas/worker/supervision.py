"""What the worker decides while it supervises its processes (one per slot it holds in a
search, one per finishing step it took), and after each exits.

Plain functions of what was observed: no process, no clock, no store. The worker
(``worker.loop``) observes the time, the stop requests and the store, and carries out the
actions these functions return.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from nas.core.settings import Settings
from nas.core.store import Lease, SearchRecord, SearchStatus
from nas.worker.process import (
    EXIT_CANCELLED,
    EXIT_INTERRUPTED,
    EXIT_LEASE_LOST,
    EXIT_OK,
)

#: How long a process may take to stop after SIGTERM before it is killed.
STOP_TIMEOUT_SECONDS = 30.0
#: How often a running search is checked for a cancel request.
CANCEL_POLL_SECONDS = 1.0
#: How long a process whose lease another worker took may take to notice and exit.
LOST_LEASE_EXIT_SECONDS = 2.0


@dataclass(frozen=True)
class SupervisionState:
    """What happened so far while one process ran; times on the monotonic clock."""

    next_heartbeat_at: float = 0.0
    #: Whether a cancel request interrupts the process once the grace is over: a slot's, whose
    #: trial must stop. A finishing step stops its final training itself on a cancel, and
    #: must not be interrupted: exporting the finished trials' models is how a cancel ends.
    interrupts_on_cancel: bool = True
    next_cancel_check_at: float = 0.0
    cancel_seen_at: float | None = None
    terminated_at: float | None = None
    lease_lost: bool = False
    #: The process closed the search itself and is only exiting.
    closed: bool = False
    #: Since when the process, closed or without its lease, is waited for to exit.
    exit_awaited_since: float | None = None


@dataclass(frozen=True)
class Heartbeat:
    """Renew the lease and the worker's heartbeat; a lost lease goes to ``after_lease_lost``."""


@dataclass(frozen=True)
class CheckCancel:
    """Ask the store whether the user cancelled the search; the answer goes to
    ``after_cancel_check``."""


@dataclass(frozen=True)
class Terminate:
    """Send SIGTERM: the process saves its tuner state and exits with EXIT_INTERRUPTED."""

    why: str


@dataclass(frozen=True)
class Kill:
    """Kill the process and wait for it."""

    why: str


Action = Heartbeat | CheckCancel | Terminate | Kill


@dataclass(frozen=True)
class Step:
    """The state after one decision, and the actions to carry out in order."""

    state: SupervisionState
    actions: tuple[Action, ...] = ()


def next_actions(
    state: SupervisionState, stop_requests: int, now: float, settings: Settings
) -> Step:
    """What to do at one tick of the supervise loop while the process is alive.

    ``stop_requests`` counts the worker's SIGTERM/SIGINT so far: the first interrupts the
    process, the second kills it. Each action that ends the process is the only one.
    """
    if state.closed:
        return _await_exit(state, now, STOP_TIMEOUT_SECONDS, "ended but its process hangs")
    if state.lease_lost:
        # Another worker holds the work now: the old process must stop writing at once.
        return _await_exit(state, now, LOST_LEASE_EXIT_SECONDS, "lost its lease")
    if stop_requests >= 2:
        return Step(state, (Kill("must stop at once (second stop request)"),))
    actions: list[Action] = []
    if stop_requests and state.terminated_at is None:
        actions.append(Terminate("must stop with the worker"))
        state = replace(state, terminated_at=now)
    if now >= state.next_heartbeat_at:
        actions.append(Heartbeat())
        state = replace(state, next_heartbeat_at=now + settings.heartbeat_seconds)
    if (
        state.interrupts_on_cancel
        and state.cancel_seen_at is None
        and now >= state.next_cancel_check_at
    ):
        actions.append(CheckCancel())
        state = replace(state, next_cancel_check_at=now + CANCEL_POLL_SECONDS)
    step = _interrupt_after_grace(state, now, settings)
    state, actions = step.state, [*actions, *step.actions]
    if state.terminated_at is not None and now - state.terminated_at > STOP_TIMEOUT_SECONDS:
        actions.append(Kill("ignored SIGTERM"))
    return Step(state, tuple(actions))


def _await_exit(state: SupervisionState, now: float, timeout: float, why: str) -> Step:
    """Give a process that only has to exit ``timeout`` seconds to, then kill it."""
    if state.exit_awaited_since is None:
        return Step(replace(state, exit_awaited_since=now))
    if now - state.exit_awaited_since > timeout:
        return Step(state, (Kill(why),))
    return Step(state)


def after_cancel_check(
    state: SupervisionState, cancel_requested: bool, now: float, settings: Settings
) -> Step:
    """Note a cancel request seen at ``now``; with no grace left, interrupt at once."""
    if not cancel_requested:
        return Step(state)
    return _interrupt_after_grace(replace(state, cancel_seen_at=now), now, settings)


def _interrupt_after_grace(state: SupervisionState, now: float, settings: Settings) -> Step:
    """A cancelled search gets the grace period to stop at an epoch end, then SIGTERM."""
    if (
        state.cancel_seen_at is None
        or state.terminated_at is not None
        or now - state.cancel_seen_at < settings.cancel_grace_seconds
    ):
        return Step(state)
    return Step(replace(state, terminated_at=now), (Terminate("did not stop at an epoch end"),))


def after_lease_lost(
    state: SupervisionState, search: SearchRecord | None, lease: Lease
) -> SupervisionState:
    """A heartbeat found the finishing step's lease gone: either its process closed the
    search (it is only exiting then) or another worker took the step over."""
    closed = closed_by_its_process(search, lease)
    return replace(state, closed=closed, lease_lost=not closed)


def after_slot_lease_lost(state: SupervisionState, search: SearchRecord | None) -> SupervisionState:
    """A heartbeat found a slot's lease gone: the search ended (a slot's process may have
    failed it: it is only exiting then) or the slot was taken back (its trial goes on
    elsewhere: its process must stop writing at once)."""
    closed = search is None or search.status.terminal
    return replace(state, closed=closed, lease_lost=not closed)


def closed_by_its_process(search: SearchRecord | None, lease: Lease) -> bool:
    """Whether the finishing process of ``lease`` closed the search itself."""
    return (
        search is not None
        and search.status.terminal
        and search.attempt == lease.attempt
        and search.attempts[-1].worker_id == lease.worker_id
    )


@dataclass(frozen=True)
class LeaveAlone:
    """The search needs nothing more from this worker."""


@dataclass(frozen=True)
class LeaveSlot:
    """Give the slot up; a trial it left running goes to another slot. A slot whose process
    ``died`` counts as a lost lease against that trial."""

    died: bool


#: Ways for a slot's process to end that leave no trial behind it or give it back.
ORDERLY_SLOT_EXITS = frozenset({EXIT_OK, EXIT_INTERRUPTED, EXIT_CANCELLED})


def after_slot_exit(exitcode: int | None, state: SupervisionState) -> LeaveSlot | LeaveAlone:
    """What to do with a slot once its process exited with ``exitcode`` (negative: the
    signal that killed it; None: it never ran)."""
    if state.lease_lost or state.closed or exitcode == EXIT_LEASE_LOST:
        return LeaveAlone()  # the slot is gone already
    return LeaveSlot(died=exitcode not in ORDERLY_SLOT_EXITS)


@dataclass(frozen=True)
class GiveBack:
    """Give the finishing step back; another worker takes it."""


@dataclass(frozen=True)
class Close:
    """End the search with ``status``."""

    status: SearchStatus
    error: str | None = None


Decision = LeaveAlone | GiveBack | Close


def exit_settles_it(exitcode: int | None, state: SupervisionState) -> bool:
    """Whether the exit of a finishing step's process alone settles the search, so that the
    store need not be asked: the process ended it, or the step is another worker's now."""
    return exitcode in (EXIT_OK, EXIT_LEASE_LOST) or state.lease_lost


def after_exit(
    exitcode: int | None,
    state: SupervisionState,
    search: SearchRecord | None,
    lease: Lease,
    *,
    stopping: bool,
) -> Decision:
    """What to do with the search once its finishing step's process exited with ``exitcode``
    (negative: the signal that killed it; None: it never ran), given the search as the store
    has it now."""
    if exit_settles_it(exitcode, state):
        return LeaveAlone()
    if (
        search is None
        or search.status != SearchStatus.RUNNING
        or search.worker_id != lease.worker_id
    ):
        return LeaveAlone()  # its process closed it itself
    if state.cancel_seen_at is not None or search.cancel_requested:
        return Close(SearchStatus.CANCELLED)
    if exitcode == EXIT_INTERRUPTED or stopping:
        return GiveBack()
    how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else exitcode
    return Close(SearchStatus.FAILED, f"the finishing process died (exit {how})")
