"""The body of one search, run in its own process (KerasTuner's memory grows per trial).

Keras is imported here only after ``KERAS_BACKEND`` is set from the settings.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

from nas.core.settings import Settings
from nas.core.store import Lease, LeaseLostError, SearchStatus, create_store
from nas.worker.hardware import backend_environment
from nas.worker.signals import Interruptions, die_with_parent

log = logging.getLogger(__name__)

#: Exit codes the supervising worker understands.
EXIT_OK, EXIT_FAILED, EXIT_LEASE_LOST, EXIT_INTERRUPTED = 0, 1, 3, 4


def search_process_main(settings: Settings, lease: Lease, parent_pid: int) -> None:
    """Entry point of the search process; exits with one of the EXIT_* codes."""
    die_with_parent(parent_pid)
    interruptions = Interruptions()
    os.nice(settings.search_niceness)
    os.environ.update(
        backend_environment(settings.backend, settings.cache_dir, settings.parallel_trials)
    )
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s search {lease.search_id[:8]} %(levelname)s %(name)s: %(message)s",
    )
    store = create_store(settings.database_url, retry_seconds=settings.store_retry_seconds)
    try:
        # Keras reads KERAS_BACKEND when first imported, so the search module comes after it.
        from nas.worker.search import run_search

        if not run_search(store, settings, lease, interruptions):
            sys.exit(EXIT_INTERRUPTED)
    except LeaseLostError as error:
        log.warning("stopping: %s", error)
        sys.exit(EXIT_LEASE_LOST)
    except Exception as error:
        log.error("search failed:\n%s", traceback.format_exc())
        try:
            store.finish_search(lease, SearchStatus.FAILED, error=describe_error(error))
        except LeaseLostError:
            sys.exit(EXIT_LEASE_LOST)
        sys.exit(EXIT_FAILED)
    finally:
        store.dispose()


def describe_error(error: BaseException) -> str:
    """A one-paragraph message a user can act on."""
    message = str(error).strip() or "no message"
    return f"{type(error).__name__}: {message}"[:2000]
