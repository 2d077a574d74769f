"""KerasTuner tuners that report every trial and epoch to the journal."""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import keras_tuner

from nas.core.errors import LeaseLostError, NasError
from nas.core.specs import SearchSpec
from nas.core.store import TrialRecord
from nas.worker.journal import TrialJournal
from nas.worker.keras_tuner_adapter import (
    CheckpointResumingTuner,
    PrivateTunerHooks,
    TrialBackup,
    write_tuner_state_atomically,
)
from nas.worker.oracles import INITIAL_EPOCH, build_oracle
from nas.worker.pruning import StopRules, early_stopping
from nas.worker.signals import Interruptions

#: The tuner that runs each algorithm's trials (the oracle, from ``build_oracle``, picks them):
#: multi-fidelity algorithms resume a promoted trial from its checkpoint.
TUNER_CLASSES: dict[str, type[keras_tuner.Tuner]] = {
    "asha": CheckpointResumingTuner,
    "random": keras_tuner.Tuner,
    "bayesian": keras_tuner.Tuner,
    "hyperband": CheckpointResumingTuner,
}
FAILED_TRIAL_STATES = {"FAILED", "INVALID"}
#: What the journal adds to Keras's metrics of each epoch: how long it took, validation
#: included, and how long its training pass alone took.
EPOCH_SECONDS = "epoch_seconds"
TRAIN_SECONDS = "train_seconds"
#: The timings among an epoch's metrics: not Keras's, so never put back into a fit's history.
TIMINGS = frozenset({EPOCH_SECONDS, TRAIN_SECONDS})
#: A trial's folder in the tuner's project folder where its fit backs up its state at each
#: epoch's end (removed when the fit ends); a rerun of the trial resumes from it.
BACKUP_FOLDER = "backup"


class SearchStopped(NasError, keras_tuner.errors.FatalError):
    """Ends the search early; KerasTuner re-raises it instead of failing the trial."""


class SearchCancelled(SearchStopped):
    """The user cancelled the search; finished trials are kept."""


class SearchInterrupted(SearchStopped):
    """The worker is stopping (SIGTERM) or cancelling mid-epoch; the trial is rerun later."""


class BudgetSpent(SearchStopped):
    """The search's time budget is spent: no new trial starts."""


class SlotYielded(SearchStopped):
    """Another search waits for a slot while this one holds more: the slot leaves between
    two trials, and its worker joins the search that needs it most."""


class LeaseLostInTrial(LeaseLostError, keras_tuner.errors.FatalError):
    """The store's :class:`LeaseLostError`, raised inside a trial: KerasTuner re-raises a
    FatalError instead of counting a failed trial and going on to the next."""


class EpochReporter(keras.callbacks.Callback):
    """Sends each epoch's metrics to the journal; stops training on cancel or SIGTERM, at the
    budget's deadline (at a batch boundary) and when a pruner gives up on the trial.

    The trial's history in the store counts its epochs from ``first_epoch``, the fit's
    ``initial_epoch`` (past 0 for a promotion that goes on from its parent's checkpoint). A fit
    that a backup resumed past it begins at a later epoch: the journal keeps the earlier run's
    epochs before it, and ``on_resumed`` gets the trial as kept and ``first_epoch``."""

    def __init__(
        self,
        journal: TrialJournal,
        trial_id: str,
        interruptions: Interruptions,
        stop_rules: StopRules,
        *,
        first_epoch: int = 0,
        on_resumed: Callable[[TrialRecord, int], None] | None = None,
    ) -> None:
        super().__init__()
        self._journal = journal
        self._trial_id = trial_id
        self._interruptions = interruptions
        self._stop_rules = stop_rules
        self._first_epoch = first_epoch
        self._on_resumed = on_resumed
        self._began = False
        self._history: list[dict[str, float]] = []
        self._epoch_started = time.perf_counter()
        self._validation_started: float | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> EpochReporter:
        # KerasTuner deep-copies callbacks per execution; the journal must stay shared.
        return EpochReporter(
            self._journal,
            self._trial_id,
            self._interruptions,
            self._stop_rules,
            first_epoch=self._first_epoch,
            on_resumed=self._on_resumed,
        )

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # A *_begin hook keeps Keras's asynchronous batch dispatch on.
        if self._interruptions.requested:
            raise SearchInterrupted
        if not self.model.stop_training and self._stop_rules.clock.expired():
            # Keras ends the epoch after this batch, validates and stops: the trial still
            # completes, with the epochs it trained.
            self._journal.trial_stopping(self._trial_id, self._stop_rules.budget_reason)
            self.model.stop_training = True

    on_test_batch_begin = on_train_batch_begin

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._began:
            # The fit's first epoch: a backup of an earlier run may have moved it on.
            self._begin(epoch)
        self._epoch_started = time.perf_counter()
        self._validation_started = None

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        # Within a fit, the epoch's validation: what came before it was the training pass.
        if self._validation_started is None:
            self._validation_started = time.perf_counter()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if not self._began:
            # Resumed from a backup of its last epoch (its run died as the fit ended).
            self._begin(self.params["epochs"])

    def _begin(self, epoch: int) -> None:
        self._began = True
        try:
            kept = self._journal.training_begins(self._trial_id, epoch - self._first_epoch)
        except LeaseLostError as error:
            raise LeaseLostInTrial(str(error)) from error
        self._history = list(kept.history)
        if kept.history and self._on_resumed is not None:
            self._on_resumed(kept, self._first_epoch)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        ended = time.perf_counter()
        trained = (self._validation_started or ended) - self._epoch_started
        metrics = (logs or {}) | {
            EPOCH_SECONDS: ended - self._epoch_started,
            TRAIN_SECONDS: trained,
        }
        try:
            recorded = self._journal.epoch_ended(
                self._trial_id, epoch - self._first_epoch, metrics, self.model.count_params()
            )
            self._history.append(recorded)
            # Already stopping here: the budget (its reason noted first) or early stopping.
            if self.model.stop_training:
                reason = self._stop_rules.patience_reason
            else:
                reason = self._pruning_reason()
        except LeaseLostError as error:
            raise LeaseLostInTrial(str(error)) from error
        if reason is not None:
            self._journal.trial_stopping(self._trial_id, reason)
            self.model.stop_training = True
        if self._journal.cancel_requested:
            self.model.stop_training = True

    def _pruning_reason(self) -> str | None:
        rules = self._stop_rules
        earlier = []
        if rules.needs_earlier_trials and len(self._history) >= rules.min_epochs:
            earlier = self._journal.earlier_histories(self._trial_id)
        return rules.pruning_reason(self._history, earlier)


class ReportingTuner(PrivateTunerHooks):
    """Mixin for a KerasTuner tuner: journals trials; between trials, stops for the budget, a
    stop request or a cancel, and leaves for a search that waits for a slot."""

    journal: TrialJournal
    interruptions: Interruptions
    stop_rules: StopRules
    tensorboard_dir: Path | None

    def pre_create_trial(self) -> None:
        super().pre_create_trial()  # type: ignore[misc]
        if self.interruptions.requested:
            raise SearchInterrupted
        if self.stop_rules.clock.expired():
            raise BudgetSpent
        if self.journal.cancel_requested:
            raise SearchCancelled
        if self.journal.should_yield():
            raise SlotYielded

    def save(self) -> None:
        """Only the oracle has state, and each of its steps saves it (no tuner.json)."""

    def reload(self) -> None:
        """Only the oracle has state; each of its steps reloads it."""

    def on_trial_begin(self, trial: keras_tuner.engine.trial.Trial) -> None:
        super().on_trial_begin(trial)  # type: ignore[misc]
        self.journal.trial_started(trial.trial_id, trial.hyperparameters.values)

    def run_trial(self, trial: keras_tuner.engine.trial.Trial, *args: Any, **kwargs: Any) -> Any:
        values = trial.hyperparameters.values
        kwargs["callbacks"] = [
            *kwargs.get("callbacks", []),
            *early_stopping(self.stop_rules.spec, values),
            EpochReporter(
                self.journal,
                trial.trial_id,
                self.interruptions,
                self.stop_rules,
                first_epoch=values.get(INITIAL_EPOCH, 0),
                on_resumed=self._resumed,
            ),
        ]
        if self.tensorboard_dir is not None:
            # KerasTuner gives each trial its own folder under log_dir, with its HParams.
            kwargs["callbacks"].append(
                keras.callbacks.TensorBoard(log_dir=str(self.tensorboard_dir))
            )
        if self.executions_per_trial == 1:  # type: ignore[attr-defined]
            # Each epoch's end backs up the weights, the optimizer's state and the epoch
            # number, after the journal recorded the epoch (a kill in between trains it again):
            # a rerun of the trial, its worker dead or stopped, goes on from there.
            kwargs["callbacks"].append(TrialBackup(self._backup_dir(trial.trial_id)))
        results = super().run_trial(trial, *args, **kwargs)  # type: ignore[misc]
        kept = self.journal.kept_epochs(trial.trial_id)
        for history in results:
            if isinstance(history, keras.callbacks.History):
                # The oracle scores the trial on every epoch it trained, not only this run's.
                prepend_epochs(history, kept)
        return results

    def _resumed(self, kept: TrialRecord, first_epoch: int) -> None:
        """The fit in progress resumed from a backup after ``kept``'s epochs (the fit's
        ``first_epoch`` the first of them): the trial's best-epoch checkpoint and early
        stopping go on from them."""
        if kept.score is not None:
            self.resume_best_epoch_checkpoint(kept.score)
        for callback in self.fit_callbacks:
            if isinstance(callback, keras.callbacks.EarlyStopping):
                for number, epoch in enumerate(kept.history):
                    callback.on_epoch_end(first_epoch + number, epoch)

    def _backup_dir(self, trial_id: str) -> str:
        return str(Path(self.get_trial_dir(trial_id), BACKUP_FOLDER))  # type: ignore[attr-defined]

    def on_trial_end(self, trial: keras_tuner.engine.trial.Trial) -> None:
        self.journal.ensure_held()  # before KerasTuner saves its state into the artifacts
        # A fit that raised (a failed trial) left its backup: the trial ended, no rerun needs it.
        shutil.rmtree(self._backup_dir(trial.trial_id), ignore_errors=True)
        super().on_trial_end(trial)  # type: ignore[misc]
        ended = self.oracle.get_trial(trial.trial_id)  # type: ignore[attr-defined]
        failed = ended.status in FAILED_TRIAL_STATES
        if self.journal.cancel_requested:
            self.journal.trial_ended(trial.trial_id, completed=False, error="cancelled")
            raise SearchCancelled
        # The status is the oracle's (it fails a trial whose objective is NaN); the error is
        # this process's.
        self.journal.trial_ended(
            trial.trial_id,
            completed=not failed,
            error=_last_line(trial.message or ended.message) if failed else None,
        )


def build_tuner(
    spec: SearchSpec,
    hypermodel: keras_tuner.HyperModel,
    project_dir: Path,
    journal: TrialJournal | None,
    interruptions: Interruptions,
    stop_rules: StopRules,
    *,
    tf_strategy: Any | None,
    tensorboard_dir: Path | None,
    seeded: Sequence[Mapping[str, Any]] = (),
) -> keras_tuner.Tuner:
    """The tuner the spec asks for, journaling into ``journal`` (None: it runs no trials);
    it tries the space's defaults first, then the ``seeded`` configurations. On the
    TensorFlow backend each trial also logs to TensorBoard under ``tensorboard_dir``."""
    write_tuner_state_atomically()
    base = TUNER_CLASSES[spec.tuner.algorithm]
    tuner_class = type(f"Reporting{base.__name__}", (ReportingTuner, base), {})
    tuner = tuner_class(
        oracle=build_oracle(spec, seeded=seeded),
        hypermodel=hypermodel,
        directory=str(project_dir.parent),
        project_name=project_dir.name,
        # The oracle's saved state is read where it is used, under the search's lock.
        overwrite=False,
        distribution_strategy=tf_strategy,
    )
    tuner.journal = journal
    tuner.interruptions = interruptions
    tuner.stop_rules = stop_rules
    tuner.dtype_policy = keras.config.dtype_policy()
    tuner.distribution = keras.distribution.distribution()
    # Keras's TensorBoard callback writes through tf.summary: on another backend it would
    # import TensorFlow into a worker that runs without it (and let it take GPU memory).
    on_tensorflow = keras.backend.backend() == "tensorflow"
    tuner.tensorboard_dir = tensorboard_dir if on_tensorflow else None
    return tuner


def prepend_epochs(history: keras.callbacks.History, epochs: Sequence[Mapping[str, float]]) -> None:
    """Put ``epochs``, as the journal recorded them, before those of a fit's ``history``."""
    if not epochs:
        return
    trained = len(history.epoch)
    names = (set(history.history) | {name for epoch in epochs for name in epoch}) - TIMINGS
    history.history = {
        name: [epoch.get(name, math.nan) for epoch in epochs]
        + list(history.history.get(name, [math.nan] * trained))
        for name in sorted(names)
    }


def _last_line(message: str | None) -> str:
    lines = [line for line in (message or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "the trial failed"
