"""The processes a worker starts: one per slot it holds in a search, and one per finishing
step it takes (KerasTuner's memory grows per trial; a killed process takes nothing else down).

Keras is imported here only after ``KERAS_BACKEND`` is set from the settings.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from nas.core.settings import Settings
from nas.core.store import Lease, LeaseLostError, SearchStatus, SlotLease, Store, create_store
from nas.worker.hardware import backend_environment
from nas.worker.signals import Interruptions, die_with_parent

log = logging.getLogger(__name__)

#: Exit codes the supervising worker understands.
EXIT_OK, EXIT_FAILED, EXIT_LEASE_LOST, EXIT_INTERRUPTED, EXIT_CANCELLED = 0, 1, 3, 4, 5


def slot_process_main(settings: Settings, lease: SlotLease, parent_pid: int) -> None:
    """Entry point of a slot's process; exits with one of the EXIT_* codes. An error outside
    any trial (the data cannot be loaded) fails the search, with that error."""
    store = _start(settings, parent_pid, f"search {lease.search_id[:8]} slot {lease.slot_id[:6]}")
    interruptions = Interruptions()
    with _exit_codes(store, lambda error: store.fail_search(lease, error)):
        # Keras reads KERAS_BACKEND when first imported, so these modules come after it.
        from nas.worker.slot import SlotEnd, run_slot

        ended = run_slot(store, settings, lease, interruptions)
        if ended == SlotEnd.INTERRUPTED:
            sys.exit(EXIT_INTERRUPTED)
        if ended == SlotEnd.CANCELLED:
            sys.exit(EXIT_CANCELLED)


def finishing_process_main(settings: Settings, lease: Lease, parent_pid: int) -> None:
    """Entry point of a finishing step's process; exits with one of the EXIT_* codes."""
    store = _start(settings, parent_pid, f"search {lease.search_id[:8]} finishing")
    interruptions = Interruptions()
    with _exit_codes(
        store, lambda error: store.finish_search(lease, SearchStatus.FAILED, error=error)
    ):
        from nas.worker.finishing import run_finishing

        if not run_finishing(store, settings, lease, interruptions):
            sys.exit(EXIT_INTERRUPTED)


@contextmanager
def _exit_codes(store: Store, fail: Callable[[str], None]) -> Iterator[None]:
    """Turn how a process's body ended into the exit code its worker understands: a lost
    lease, or an error that ``fail`` records on the search first; the store is closed."""
    try:
        yield
    except LeaseLostError as error:
        log.warning("stopping: %s", error)
        sys.exit(EXIT_LEASE_LOST)
    except Exception as error:
        log.error("search failed:\n%s", traceback.format_exc())
        try:
            fail(describe_error(error))
        except LeaseLostError:
            sys.exit(EXIT_LEASE_LOST)
        sys.exit(EXIT_FAILED)
    finally:
        store.dispose()


def _start(settings: Settings, parent_pid: int, name: str) -> Store:
    """Tie this process to its worker, set the backend's environment and logging; its store."""
    die_with_parent(parent_pid)
    os.nice(settings.search_niceness)
    os.environ.update(
        backend_environment(settings.backend, settings.cache_dir, settings.parallel_trials)
    )
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s"
    )
    return create_store(settings.database_url, retry_seconds=settings.store_retry_seconds)


def describe_error(error: BaseException) -> str:
    """A one-paragraph message a user can act on."""
    message = str(error).strip() or "no message"
    return f"{type(error).__name__}: {message}"[:2000]
