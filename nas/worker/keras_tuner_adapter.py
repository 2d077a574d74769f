"""The one module that touches KerasTuner's internals (``keras_tuner.src`` and private
methods); ``tests/unit/test_keras_tuner_adapter.py`` fails loudly when an upgrade removes them.

- State files: KerasTuner saves its oracle, trials, tuner and build configs as JSON by opening
  the file for writing and then writing it: a worker killed in between leaves an empty or cut
  file, and the worker that takes the search over fails to reload it. Written to a temporary
  file beside it and renamed over it, a state file is always either the old one or the new one.
- The oracle's saved state shared by every worker of a search: reloaded with its ongoing
  trials kept (``Oracle.reload`` would queue them all for a retry), the ongoing trials of
  tuners that died moved to its retry queue, trials the store failed ended as failed; a
  trial parsed again only when it is not as saved, an ended one never read again; oracle.json
  saved once a step, not also midway through KerasTuner's ``create_trial`` and ``end_trial``.
- Three private hooks of ``keras_tuner.Tuner`` that this service's tuners override, and the
  trial's best-epoch checkpoint (``SaveBestEpoch``) a resumed fit starts from its kept best.
- The oracles' random draw (``Oracle._random_values``), which every built-in algorithm makes
  for its first trials: this service's oracles put their own configurations before it.
- The files of Keras's ``BackupAndRestore`` (the latest backup and the one before it),
  checked before a fit resumes from them: a kill mid-write leaves a backup cut short.
- Hyperband's tuner driven by another oracle: its ``run_trial`` trains from
  ``tuner/initial_epoch`` to ``tuner/epochs`` and its ``_build_hypermodel`` loads the weights
  of ``tuner/trial_id``'s checkpoint, which is how ASHA's promotions resume.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import h5py
import keras
import keras_tuner
from keras_tuner.src import backend as keras_tuner_backend
from keras_tuner.src import utils as keras_tuner_utils
from keras_tuner.src.engine import tuner_utils

log = logging.getLogger(__name__)
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


Trial = keras_tuner.engine.trial.Trial


@dataclass
class ParsedTrials:
    """The trials of one oracle as this process last parsed them, by id, and those of them it
    knows ended. Parsing a trial (its hyperparameters' classes) is most of a reload, so:

    - an ended trial is never read again: KerasTuner writes a trial's file before the
      oracle.json that ends it and never after (``end_failed_trials`` ends only trials not
      ended yet), and ``get_trial`` of one needs no step;
    - any other is read, and parsed again only if its state is not the one saved: the tuner
      that runs it changes the object it was given, and its steps change the file.
    """

    by_id: dict[str, Trial] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)

    def load(self, path: str, trial_id: str, *, ended: bool) -> Trial:
        """Trial ``trial_id``, saved at ``path``; ``ended`` if oracle.json says so."""
        kept = self.by_id.get(trial_id)
        if kept is None or trial_id not in self.ended:
            state = _read_json(path)
            # Cheaper than parsing, which also takes ``state`` apart.
            if kept is None or kept.get_state() != state:
                kept = self.by_id[trial_id] = Trial.from_state(state)
            if ended:
                self.ended.add(trial_id)
        return kept

    def ended_trial(self, trial_id: str) -> Trial | None:
        """Trial ``trial_id`` if this process knows it ended, else None."""
        return self.by_id[trial_id] if trial_id in self.ended else None

    def note_ended(self, oracle: keras_tuner.Oracle) -> None:
        """Note the trials ``oracle`` ended, once they are saved as it has them."""
        for trial_id in oracle.end_order:
            if trial_id not in self.ended:
                self.by_id[trial_id] = oracle.trials[trial_id]
                self.ended.add(trial_id)


def load_saved_state(oracle: keras_tuner.Oracle, parsed: ParsedTrials | None = None) -> bool:
    """Replace ``oracle``'s state with the one saved in its project folder (oracle.json and
    its trials' files), ongoing trials included; False, leaving it as it is, when none was
    saved yet. Unlike ``Oracle.reload``, the trials other tuners run now stay theirs, and a
    trial file that oracle.json does not know of is left out. With ``parsed``, the trials it
    holds are reused where they are still the saved ones (see :class:`ParsedTrials`)."""
    try:
        state = _read_json(oracle._get_oracle_fname())
    except FileNotFoundError:
        return False
    parsed = parsed if parsed is not None else ParsedTrials()
    # Where ``Oracle._save_trial`` writes (``_get_trial_dir`` would create missing folders).
    project_dir = oracle._project_dir
    ended = set(state["end_order"])
    oracle.trials = {}
    # Only the trials oracle.json lists: a trial's file saved by a step cut short before
    # oracle.json (``create_trial`` saves the trial first) is a trial the oracle never made,
    # and its id is given out again. In the order of their (zero-padded) ids, as the trials
    # were made: the oracle breaks ties between equal scores by it, as the store's
    # leaderboard does.
    for trial_id in sorted(state["start_order"]):
        path = os.path.join(project_dir, f"trial_{trial_id}", "trial.json")
        oracle.trials[trial_id] = parsed.load(path, trial_id, ended=trial_id in ended)
    oracle.set_state(state)
    return True


def _read_json(path: str) -> Any:
    if "://" in path:
        if not keras_tuner_backend.io.exists(path):
            raise FileNotFoundError(path)
        with keras_tuner_backend.io.File(path, "r") as file:
            return json.loads(file.read())
    # KerasTuner's reads go through TensorFlow's file system on its backend, which costs
    # more than the parsing of a small file.
    with open(path) as file:
        return json.load(file)


@contextlib.contextmanager
def one_save_after(oracle: keras_tuner.Oracle) -> Iterator[None]:
    """Skip the saves of oracle.json that ``oracle``'s own methods make inside: the caller
    saves it once, after. ``Oracle.create_trial`` saves it before its display notes the new
    trial, ``Oracle.end_trial`` before it takes the ended trial off ``ongoing_trials``: both
    need saving again anyway, and each save is written and flushed to the disk."""
    oracle.save = lambda: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        del oracle.save


def requeue_trials_of_dead_tuners(
    oracle: keras_tuner.Oracle, live_tuner_ids: Collection[str]
) -> list[str]:
    """Move the ongoing trials of tuners not in ``live_tuner_ids`` to the oracle's retry queue,
    which its next ``create_trial`` serves first, as ``Oracle.reload`` does for every ongoing
    trial; returns their ids. A trial the oracle ended already is only taken off."""
    moved = []
    for tuner_id, trial in list(oracle.ongoing_trials.items()):
        if tuner_id in live_tuner_ids:
            continue
        del oracle.ongoing_trials[tuner_id]
        if trial.trial_id not in oracle.end_order and trial.trial_id not in oracle._retry_queue:
            oracle._retry_queue.append(trial.trial_id)
            moved.append(trial.trial_id)
    return moved


def end_failed_trials(oracle: keras_tuner.Oracle, failed: Mapping[str, str]) -> list[str]:
    """End as failed, with its reason, each trial of ``failed`` (trial id to reason) the oracle
    has not ended (the store failed it: its workers kept dying); it leaves the retry queue
    and the ongoing trials. Returns their ids."""
    ended = []
    for trial_id, reason in failed.items():
        trial = oracle.trials.get(trial_id)
        if trial is None or trial_id in oracle.end_order:
            continue
        oracle._retry_queue = [queued for queued in oracle._retry_queue if queued != trial_id]
        for tuner_id, ongoing in list(oracle.ongoing_trials.items()):
            if ongoing.trial_id == trial_id:
                del oracle.ongoing_trials[tuner_id]
        trial.status = keras_tuner.engine.trial.TrialStatus.FAILED
        trial.message = reason
        oracle.end_order.append(trial_id)
        oracle._save_trial(trial)
        ended.append(trial_id)
    return ended


class PrivateTunerHooks:
    """Mixin for a ``keras_tuner.Tuner`` that keeps this process's choices across KerasTuner's
    private steps (set ``dtype_policy`` and ``distribution`` on the tuner), and lets a fit
    resume from a ``keras.callbacks.BackupAndRestore`` among its callbacks."""

    dtype_policy: Any
    distribution: Any | None
    #: The callbacks of the fit in progress, in the order Keras calls them.
    fit_callbacks: tuple[keras.callbacks.Callback, ...] = ()

    def _populate_initial_space(self) -> None:
        # KerasTuner builds models to explore the conditional scopes; declaring is enough (no
        # weight initializer compiled on JAX), and some of those models may be over the
        # parameter cap.
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

    def _build_and_fit_model(
        self, trial: keras_tuner.engine.trial.Trial, *args: Any, **kwargs: Any
    ) -> Any:
        # KerasTuner appends its own callbacks to the caller's, the trial's best-epoch
        # checkpoint last: a backup written before it could hold an epoch whose weights the
        # checkpoint never got, and a fit resumed from that backup would never save them.
        callbacks = list(kwargs.get("callbacks", []))
        backups = [c for c in callbacks if isinstance(c, keras.callbacks.BackupAndRestore)]
        others = [c for c in callbacks if not isinstance(c, keras.callbacks.BackupAndRestore)]
        kwargs["callbacks"] = [*others, *backups]
        self.fit_callbacks = tuple(kwargs["callbacks"])
        return super()._build_and_fit_model(trial, *args, **kwargs)  # type: ignore[misc]

    def resume_best_epoch_checkpoint(self, best_value: float) -> None:
        """The fit in progress resumed from a backup, and the trial's checkpoint holds its
        best epoch so far, of objective ``best_value``: KerasTuner's ``SaveBestEpoch``, which
        starts each fit from the worst value, saves over it only a better epoch. A checkpoint
        a kill cut short is saved over at the next epoch, as a fit from scratch does."""
        for callback in self.fit_callbacks:
            if isinstance(callback, tuner_utils.SaveBestEpoch):
                if _weights_read_whole(callback.filepath):
                    callback.best_value = best_value
                else:
                    log.warning("the checkpoint %s was cut short: saved again", callback.filepath)


class TrialBackup(keras.callbacks.BackupAndRestore):
    """Keras's ``BackupAndRestore`` that keeps the backup before the latest one, and resumes
    only from one it can read whole. A kill mid-write cuts the latest short: Keras falls back
    on the one before where the weights do not open, but not where the epoch's file is cut,
    and the first backup has none before it (the fit then starts from scratch)."""

    def __init__(self, backup_dir: str) -> None:
        super().__init__(backup_dir, double_checkpoint=True)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        latest = (self._weights_path, self._training_metadata_path)
        before = (self._prev_weights_path, self._prev_training_metadata_path)
        if os.path.exists(self.backup_dir) and not _readable_backup(*latest):
            if _readable_backup(*before):
                log.warning(
                    "the backup in %s was cut short: resuming from the one before", self.backup_dir
                )
                for whole, cut in zip(before, latest, strict=True):
                    shutil.copyfile(whole, cut)
            else:
                log.warning(
                    "the backup in %s was cut short: training from scratch", self.backup_dir
                )
                shutil.rmtree(self.backup_dir, ignore_errors=True)
        super().on_train_begin(logs)


def _readable_backup(weights: str, metadata: str) -> bool:
    """Whether the backup's weights read back whole and its epoch's file parses."""
    try:
        with open(metadata) as file:
            int(json.load(file)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return _weights_read_whole(weights)


def _weights_read_whole(path: str) -> bool:
    """Whether the weights file at ``path`` opens and reads back whole."""
    try:
        with h5py.File(path, "r") as file:
            file.visititems(_read_dataset)
    except (OSError, ValueError, KeyError):
        return False
    return True


def _read_dataset(_name: str, item: h5py.Group | h5py.Dataset) -> None:
    if isinstance(item, h5py.Dataset):
        _ = item[()]  # a file cut short fails here, if not when opened


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
