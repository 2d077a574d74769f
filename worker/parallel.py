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
import threading
import time
import traceback
from concurrent import futures
from typing import Any

from service.settings import Settings
from service.store import Lease, LeaseLostError, create_store
from worker.hardware import backend_environment
from worker.process import EXIT_FAILED, EXIT_LEASE_LOST

log = logging.getLogger(__name__)

#: A trial process that stopped because the user cancelled the search.
EXIT_CANCELLED = 4
ORACLE_HOST = "127.0.0.1"


def run_trial_processes(oracle: Any, settings: Settings, lease: Lease, processes: int) -> None:
    """Serve ``oracle`` and run ``processes`` trial processes until it hands out no more trials.

    Raises:
        SearchCancelled: the user cancelled the search (finished trials are kept).
        LeaseLostError: another worker took the search over.
        RuntimeError: a trial process died; the others are stopped.
    """
    import grpc

    # KerasTuner's own servicer of its distributed tuning (not exported under a public name).
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer

    from worker.tuning import SearchCancelled

    # The trial processes' search(verbose=0) does not reach the oracle they share.
    oracle.verbose = 0
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    protos.get_service_grpc().add_OracleServicer_to_server(OracleServicer(oracle), server)
    port = server.add_insecure_port(f"{ORACLE_HOST}:0")
    server.start()
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(
            target=trial_process_main,
            args=(settings, lease, f"trials-{number}", port),
            name=f"trials-{lease.search_id[:8]}-{number}",
            daemon=True,
        )
        for number in range(1, processes + 1)
    ]
    try:
        for child in children:
            child.start()
        failed = _wait_for(children)
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
            child.join()
        server.stop(grace=None)
    codes = {child.name: child.exitcode for child in children}
    if EXIT_LEASE_LOST in codes.values():
        raise LeaseLostError(f"search {lease.search_id} was taken over by another worker")
    if failed is not None:
        raise RuntimeError(
            f"trial process {failed.name} died (exit code {failed.exitcode}); see the worker log"
        )
    if EXIT_CANCELLED in codes.values():
        raise SearchCancelled


def trial_process_main(settings: Settings, lease: Lease, tuner_id: str, oracle_port: int) -> None:
    """Entry point of a trial process: runs trials of the oracle served on ``oracle_port``."""
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
    _exit_with_parent()
    store = create_store(settings.database_url)
    try:
        # After the environment: Keras reads KERAS_BACKEND when first imported.
        from worker.search import run_trials
        from worker.tuning import SearchCancelled

        try:
            run_trials(store, settings, lease)
        except SearchCancelled:
            sys.exit(EXIT_CANCELLED)
    except LeaseLostError as error:
        log.warning("stopping: %s", error)
        sys.exit(EXIT_LEASE_LOST)
    except Exception:
        log.error("trial process failed:\n%s", traceback.format_exc())
        sys.exit(EXIT_FAILED)
    finally:
        store.dispose()


def _wait_for(children: list[multiprocessing.process.BaseProcess]) -> Any | None:
    """Wait until every child has exited; returns the first that failed, once the others are
    stopped (a trial process that dies leaves its trial running in the oracle for ever)."""
    while True:
        for child in children:
            if child.exitcode not in (None, 0, EXIT_CANCELLED):
                return child
        if all(child.exitcode is not None for child in children):
            return None
        time.sleep(0.2)


def _exit_with_parent() -> None:
    """End this process if the search process dies (killed on cancel, or its worker stopped)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(EXIT_FAILED)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
