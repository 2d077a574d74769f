"""What the worker decides while it supervises a search process, and after it exits.

Plain functions of what was observed: no process, no clock, no store. The worker
(``worker.loop``) observes the time, the stop requests and the store, and carries out the
actions these functions return.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from nas.core.settings import Settings
from nas.core.store import Lease, SearchRecord, SearchStatus
from nas.worker.process import EXIT_INTERRUPTED, EXIT_LEASE_LOST, EXIT_OK

#: How long a search process may take to stop after SIGTERM before it is killed.
STOP_TIMEOUT_SECONDS = 30.0
#: How often a running search is checked for a cancel request.
CANCEL_POLL_SECONDS = 1.0
#: How long a process whose lease another worker took may take to notice and exit.
LOST_LEASE_EXIT_SECONDS = 2.0


@dataclass(frozen=True)
class SupervisionState:
    """What happened so far while one search process ran; times on the monotonic clock."""

    next_heartbeat_at: float = 0.0
    next_cancel_check_at: float = 0.0
    cancel_seen_at: float | None = None
    terminated_at: float | None = None
    lease_lost: bool = False
    #: The search process closed the search itself and is only exiting.
    closed: bool = False


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


@dataclass(frozen=True)
class AwaitExit:
    """Wait up to ``timeout`` seconds for the process to exit, then kill it."""

    timeout: float
    why: str


Action = Heartbeat | CheckCancel | Terminate | Kill | AwaitExit


@dataclass(frozen=True)
class Step:
    """The state after one decision, and the actions to carry out in order."""

    state: SupervisionState
    actions: tuple[Action, ...] = ()


def next_actions(
    state: SupervisionState, stop_requests: int, now: float, settings: Settings
) -> Step:
    """What to do at one tick of the supervise loop while the search process is alive.

    ``stop_requests`` counts the worker's SIGTERM/SIGINT so far: the first interrupts the
    search, the second kills it. Each action that ends the process is the only one.
    """
    if state.closed:
        return Step(state, (AwaitExit(STOP_TIMEOUT_SECONDS, "ended but its process hangs"),))
    if state.lease_lost:
        # Another worker holds the search now: its old process must stop writing at once.
        return Step(state, (AwaitExit(LOST_LEASE_EXIT_SECONDS, "lost its lease"),))
    if stop_requests >= 2:
        return Step(state, (Kill("must stop at once (second stop request)"),))
    actions: list[Action] = []
    if stop_requests and state.terminated_at is None:
        actions.append(Terminate("must stop with the worker"))
        state = replace(state, terminated_at=now)
    if now >= state.next_heartbeat_at:
        actions.append(Heartbeat())
        state = replace(state, next_heartbeat_at=now + settings.heartbeat_seconds)
    if state.cancel_seen_at is None and now >= state.next_cancel_check_at:
        actions.append(CheckCancel())
        state = replace(state, next_cancel_check_at=now + CANCEL_POLL_SECONDS)
    step = _interrupt_after_grace(state, now, settings)
    state, actions = step.state, [*actions, *step.actions]
    if state.terminated_at is not None and now - state.terminated_at > STOP_TIMEOUT_SECONDS:
        actions.append(Kill("ignored SIGTERM"))
    return Step(state, tuple(actions))


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
    """A heartbeat found the lease gone: either the search process closed the search (it is
    only exiting then) or another worker took it over."""
    closed = closed_by_its_process(search, lease)
    return replace(state, closed=closed, lease_lost=not closed)


def closed_by_its_process(search: SearchRecord | None, lease: Lease) -> bool:
    """Whether the search process of ``lease`` closed the search itself."""
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
class GiveBack:
    """Release the search to the queue; another worker resumes it."""


@dataclass(frozen=True)
class Close:
    """End the search with ``status``."""

    status: SearchStatus
    error: str | None = None


Decision = LeaveAlone | GiveBack | Close


def exit_settles_it(exitcode: int | None, state: SupervisionState) -> bool:
    """Whether the exit alone settles the search, so that the store need not be asked: the
    process ended it, or the search belongs to another worker now."""
    return exitcode in (EXIT_OK, EXIT_LEASE_LOST) or state.lease_lost


def after_exit(
    exitcode: int | None,
    state: SupervisionState,
    search: SearchRecord | None,
    lease: Lease,
    *,
    stopping: bool,
) -> Decision:
    """What to do with the search once its process exited with ``exitcode`` (negative: the
    signal that killed it; None: it never ran), given the search as the store has it now."""
    if exit_settles_it(exitcode, state):
        return LeaveAlone()
    if (
        search is None
        or search.status != SearchStatus.RUNNING
        or search.worker_id != lease.worker_id
    ):
        return LeaveAlone()  # the search process closed it itself
    if state.cancel_seen_at is not None:
        return Close(SearchStatus.CANCELLED)
    if exitcode == EXIT_INTERRUPTED or stopping:
        return GiveBack()
    how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else exitcode
    return Close(SearchStatus.FAILED, f"the search process died (exit {how})")
