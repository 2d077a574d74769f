"""KerasTuner tuners that report every trial and epoch to the journal."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import keras_tuner

from nas.core.errors import LeaseLostError, NasError
from nas.core.specs import SearchSpec
from nas.worker.journal import TrialJournal
from nas.worker.keras_tuner_adapter import (
    CheckpointResumingTuner,
    PrivateTunerHooks,
    write_tuner_state_atomically,
)
from nas.worker.oracles import build_oracle
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
    budget's deadline (at a batch boundary) and when a pruner gives up on the trial."""

    def __init__(
        self,
        journal: TrialJournal,
        trial_id: str,
        interruptions: Interruptions,
        stop_rules: StopRules,
    ) -> None:
        super().__init__()
        self._journal = journal
        self._trial_id = trial_id
        self._interruptions = interruptions
        self._stop_rules = stop_rules
        self._history: list[dict[str, float]] = []
        self._epoch_started = time.perf_counter()

    def __deepcopy__(self, memo: dict[int, Any]) -> EpochReporter:
        # KerasTuner deep-copies callbacks per execution; the journal must stay shared.
        return EpochReporter(self._journal, self._trial_id, self._interruptions, self._stop_rules)

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
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        seconds = time.perf_counter() - self._epoch_started
        metrics = (logs or {}) | {"epoch_seconds": seconds}
        try:
            recorded = self._journal.epoch_ended(
                self._trial_id, epoch, metrics, self.model.count_params()
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
        kwargs["callbacks"] = [
            *kwargs.get("callbacks", []),
            *early_stopping(self.stop_rules.spec, trial.hyperparameters.values),
            EpochReporter(self.journal, trial.trial_id, self.interruptions, self.stop_rules),
        ]
        if self.tensorboard_dir is not None:
            # KerasTuner gives each trial its own folder under log_dir, with its HParams.
            kwargs["callbacks"].append(
                keras.callbacks.TensorBoard(log_dir=str(self.tensorboard_dir))
            )
        return super().run_trial(trial, *args, **kwargs)  # type: ignore[misc]

    def on_trial_end(self, trial: keras_tuner.engine.trial.Trial) -> None:
        self.journal.ensure_held()  # before KerasTuner saves its state into the artifacts
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


def _last_line(message: str | None) -> str:
    lines = [line for line in (message or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "the trial failed"
