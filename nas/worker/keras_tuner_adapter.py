"""The one module that touches KerasTuner's internals (``keras_tuner.src`` and private
methods); ``tests/unit/test_keras_tuner_adapter.py`` fails loudly when an upgrade removes them.

- State files: KerasTuner saves its oracle, trials, tuner and build configs as JSON by opening
  the file for writing and then writing it: a worker killed in between leaves an empty or cut
  file, and the worker that takes the search over fails to reload it. Written to a temporary
  file beside it and renamed over it, a state file is always either the old one or the new one.
- The oracle's gRPC servicer of KerasTuner's distributed tuning (no public name).
- Two private hooks of ``keras_tuner.Tuner`` that this service's tuners override.
- The oracles' random draw (``Oracle._random_values``), which every built-in algorithm makes
  for its first trials: this service's oracles put their own configurations before it.
- Hyperband's tuner driven by another oracle: its ``run_trial`` trains from
  ``tuner/initial_epoch`` to ``tuner/epochs`` and its ``_build_hypermodel`` loads the weights
  of ``tuner/trial_id``'s checkpoint, which is how ASHA's promotions resume.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from concurrent import futures
from typing import Any

import keras
import keras_tuner
from keras_tuner.src import utils as keras_tuner_utils

_keras_tuner_save_json = keras_tuner_utils.save_json


def save_json_atomically(path: str, obj: Any) -> str:
    """Write ``obj`` as JSON to ``path`` in one rename; returns the JSON text, as KerasTuner's
    ``save_json`` does. Remote paths (``gs://``) keep KerasTuner's write: an object store
    publishes an object only once it is closed."""
    if "://" in path:
        return _keras_tuner_save_json(path, obj)
    text = json.dumps(obj)
    descriptor, temporary = tempfile.mkstemp(
        dir=os.path.dirname(path) or ".", prefix=".", suffix=".json.tmp"
    )
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
            file.flush()
            # Without it a machine crash could rename an empty file into place.
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return text


def write_tuner_state_atomically() -> None:
    """Make every KerasTuner state write in this process atomic (idempotent)."""
    # KerasTuner's modules call ``utils.save_json`` through the module, so replacing the
    # module attribute reaches the oracle, trial, tuner and build-config writes.
    keras_tuner_utils.save_json = save_json_atomically


def retry_no_ended_trial(oracle: keras_tuner.Oracle) -> None:
    """Keep a reloaded oracle from running a finished trial again.

    ``Oracle.end_trial`` saves the oracle's state before it takes the ended trial off
    ``ongoing_trials``, and ``Oracle.reload`` queues every trial still listed there for a
    retry: a worker killed between the save and the oracle's next one (while the trial's
    process records it, or asks for its next trial) left a finished trial to be rerun by the
    worker that resumed the search. Only trials the oracle has ended are dropped; one it
    queued for a retry itself (an invalid trial) never reached ``end_order``.
    """
    ended = set(oracle.end_order)
    oracle._retry_queue = [trial_id for trial_id in oracle._retry_queue if trial_id not in ended]


def serve_oracle(oracle: keras_tuner.Oracle, address: str) -> Any:
    """A started gRPC server of ``oracle`` at ``address`` for KerasTuner's trial processes
    (``KERASTUNER_ORACLE_IP``/``PORT``); stop it with ``server.stop(grace=None)``."""
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    protos.get_service_grpc().add_OracleServicer_to_server(OracleServicer(oracle), server)
    server.add_insecure_port(address)
    server.start()
    return server


class PrivateTunerHooks:
    """Mixin for a ``keras_tuner.Tuner`` that keeps this process's choices across KerasTuner's
    private steps: set ``dtype_policy`` and ``distribution`` on the tuner."""

    dtype_policy: Any
    distribution: Any | None

    def _populate_initial_space(self) -> None:
        # A trial process (KerasTuner's distributed tuning) asks the search process's oracle,
        # which has the whole space already: building a model per conditional scope again,
        # compiling each weight initializer on JAX, would only delay its first trial.
        if "KERASTUNER_ORACLE_IP" not in os.environ:
            # KerasTuner builds models to explore the conditional scopes; declaring is enough,
            # and some of those models may be over the parameter cap.
            with self.hypermodel.declaring_only():  # type: ignore[attr-defined]
                super()._populate_initial_space()  # type: ignore[misc]

    def _build_hypermodel(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        # KerasTuner clears the Keras session before each build, which also forgets the dtype
        # policy and the distribution this process chose: each trial would train in float32
        # on one device.
        keras.config.set_dtype_policy(self.dtype_policy)
        if self.distribution is not None:
            keras.distribution.set_distribution(self.distribution)
        return super()._build_hypermodel(hp)  # type: ignore[misc]


class SeededDraws:
    """Mixin for a ``keras_tuner.Oracle``: where KerasTuner would draw random values, it first
    asks ``seeded_values()`` (None: draw as KerasTuner does)."""

    def seeded_values(self) -> dict[str, Any] | None:
        """The next configuration to try before random ones, or None."""
        return None

    def tried_before(self, values: dict[str, Any]) -> bool:
        """Whether a trial of this oracle already had ``values``."""
        return self._duplicate(values)  # type: ignore[attr-defined]

    def draw_values(self) -> dict[str, Any] | None:
        """Seeded values, else random ones not tried yet; None when the space is exhausted."""
        return self._random_values()

    def _random_values(self) -> dict[str, Any] | None:
        seeded = self.seeded_values()
        return seeded if seeded is not None else super()._random_values()  # type: ignore[misc]


class CheckpointResumingTuner(keras_tuner.Hyperband):
    """KerasTuner's Hyperband tuner with the oracle given: a trial whose hyperparameters hold
    ``tuner/trial_id`` starts from that trial's best checkpoint and trains from
    ``tuner/initial_epoch`` to ``tuner/epochs``."""

    def __init__(self, oracle: keras_tuner.Oracle, **kwargs: Any) -> None:
        # Hyperband's own __init__ only builds a HyperbandOracle and hands it on.
        keras_tuner.Tuner.__init__(self, oracle=oracle, **kwargs)
