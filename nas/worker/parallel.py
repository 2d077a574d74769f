"""Several trials of one search in flight on the same devices.

The search process serves its tuner's oracle over gRPC, as KerasTuner's distributed tuning
does, and starts trial processes that each ask it for the next trial until it has none. While
one trial compiles (most of a short trial on a GPU), the others train. Keras is imported here
only inside functions: a trial process sets its backend's environment first.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from nas.core.ports import free_port
from nas.core.settings import Settings
from nas.core.store import Lease, LeaseLostError, create_store
from nas.worker.hardware import backend_environment
from nas.worker.process import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_LEASE_LOST
from nas.worker.signals import Interruptions, die_with_parent

log = logging.getLogger(__name__)

#: A trial process that stopped because the user cancelled the search.
EXIT_CANCELLED = 5
#: Ways for a trial process to end that do not stop the others.
ORDERLY_EXITS = frozenset({0, EXIT_CANCELLED, EXIT_INTERRUPTED})
ORACLE_HOST = "127.0.0.1"


@contextmanager
def trial_processes(
    settings: Settings, lease: Lease, processes: int, interruptions: Interruptions
) -> Iterator[TrialProcesses]:
    """Start ``processes`` trial processes now: they import Keras and load the data while this
    process builds the tuner, then wait for its oracle to be served. They are stopped on exit."""
    port = free_port()
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(
            target=trial_process_main,
            args=(settings, lease, f"trials-{number}", port, os.getpid()),
            name=f"trials-{lease.search_id[:8]}-{number}",
            daemon=True,
        )
        for number in range(1, processes + 1)
    ]
    try:
        for child in children:
            child.start()
        yield TrialProcesses(children, port, lease, interruptions)
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
            child.join()


@dataclass(frozen=True)
class TrialProcesses:
    """The trial processes of a search, waiting for its oracle."""

    children: list[multiprocessing.process.BaseProcess]
    port: int
    lease: Lease
    interruptions: Interruptions

    def serve(self, tuner: Any) -> None:
        """Serve ``tuner``'s oracle to the trial processes until it hands out no more trials.

        A SIGTERM to this process is passed on to them: each stops at a batch boundary.

        Raises:
            SearchInterrupted: SIGTERM stopped the trial processes before the end.
            SearchCancelled: the user cancelled the search (finished trials are kept).
            LeaseLostError: another worker took the search over.
            RuntimeError: a trial process died; the others are stopped.
        """
        from nas.worker.keras_tuner_adapter import serve_oracle
        from nas.worker.tuning import SearchCancelled, SearchInterrupted

        # As KerasTuner's chief does before serving: without the tuner's file, a re-claimed
        # search would not reload the oracle's state and would rerun its finished trials.
        tuner.save()
        oracle = tuner.oracle
        # The trial processes' search(verbose=0) does not reach the oracle they share.
        oracle.verbose = 0
        server = serve_oracle(oracle, f"{ORACLE_HOST}:{self.port}")
        try:
            failed = self._wait()
        finally:
            for child in self.children:
                if child.is_alive():
                    child.kill()
                child.join()
            server.stop(grace=None)
        codes = {child.exitcode for child in self.children}
        if EXIT_LEASE_LOST in codes:
            raise LeaseLostError(f"search {self.lease.search_id} was taken over by another worker")
        if failed is not None:
            raise RuntimeError(
                f"trial process {failed.name} died (exit code {failed.exitcode}); "
                "see the worker log"
            )
        if EXIT_INTERRUPTED in codes:
            raise SearchInterrupted
        if EXIT_CANCELLED in codes:
            raise SearchCancelled

    def _wait(self) -> multiprocessing.process.BaseProcess | None:
        """Wait until every child has exited, passing a SIGTERM on; returns the first that
        failed (the others are then stopped: a dead one leaves its trial running for ever)."""
        passed_on = False
        while True:
            if self.interruptions.requested and not passed_on:
                for child in self.children:
                    if child.is_alive():
                        child.terminate()
                passed_on = True
            for child in self.children:
                if child.exitcode is not None and child.exitcode not in ORDERLY_EXITS:
                    return child
            if all(child.exitcode is not None for child in self.children):
                return None
            time.sleep(0.2)


def trial_process_main(
    settings: Settings, lease: Lease, tuner_id: str, oracle_port: int, parent_pid: int
) -> None:
    """Entry point of a trial process: runs trials of the oracle served on ``oracle_port``."""
    die_with_parent(parent_pid)
    interruptions = Interruptions()
    os.environ.update(
        backend_environment(settings.backend, settings.cache_dir, settings.parallel_trials)
    )
    os.environ.update(
        KERASTUNER_TUNER_ID=tuner_id,
        KERASTUNER_ORACLE_IP=ORACLE_HOST,
        KERASTUNER_ORACLE_PORT=str(oracle_port),
    )
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s search {lease.search_id[:8]} {tuner_id} "
        "%(levelname)s %(name)s: %(message)s",
    )
    store = create_store(settings.database_url, retry_seconds=settings.store_retry_seconds)
    try:
        # After the environment: Keras reads KERAS_BACKEND when first imported.
        from nas.worker.search import run_trials
        from nas.worker.tuning import BudgetSpent, SearchCancelled, SearchInterrupted

        try:
            run_trials(store, settings, lease, interruptions)
        except BudgetSpent:
            log.info("the search's budget is spent: no new trial")
        except SearchCancelled:
            sys.exit(EXIT_CANCELLED)
        except SearchInterrupted:
            sys.exit(EXIT_INTERRUPTED)
    except LeaseLostError as error:
        log.warning("stopping: %s", error)
        sys.exit(EXIT_LEASE_LOST)
    except Exception:
        log.error("trial process failed:\n%s", traceback.format_exc())
        sys.exit(EXIT_FAILED)
    finally:
        store.dispose()
