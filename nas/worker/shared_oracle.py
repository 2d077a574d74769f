"""One search's KerasTuner oracle shared by the slots of every worker, through the store.

The oracle's state lives in the search's artifacts (oracle.json and each trial's trial.json,
as KerasTuner saves them). Each call a tuner makes reloads that state under the search's
lock in the store, reconciles it with the slots still alive, runs, and saves: any worker can
take the next step, and a dead one holds up nobody for longer than its lease. Only a trial
that ended, which never changes, is read without a step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import keras_tuner

from nas.core.store import OracleContext, OracleOutcome, SlotLease, Store
from nas.worker.keras_tuner_adapter import (
    ParsedTrials,
    end_failed_trials,
    load_saved_state,
    one_save_after,
    requeue_trials_of_dead_tuners,
    retry_no_ended_trial,
)

T = TypeVar("T")

#: How long a slot waits before asking again when the oracle answers IDLE (Hyperband waiting
#: for a bracket's trials, ASHA for a promotion): the question is a write transaction.
IDLE_WAIT_SECONDS = 1.0

TrialStatus = keras_tuner.engine.trial.TrialStatus


class SharedOracle:
    """Stands in for ``oracle`` as a tuner's ``oracle`` in one slot, the way KerasTuner's
    ``OracleClient`` stands in for the chief's: each call (but ``get_trial`` of a trial seen
    ended) is one step of the store's :meth:`Store.oracle_step`, fenced by the slot's
    lease."""

    #: What the tuner reads of the oracle's configuration, which never changes.
    _CONFIGURATION = frozenset({"objective", "max_trials", "allow_new_entries", "tune_new_entries"})

    def __init__(self, oracle: keras_tuner.Oracle, store: Store, lease: SlotLease) -> None:
        self._oracle = oracle
        self._store = store
        self._lease = lease
        self._parsed = ParsedTrials()
        # Set by KerasTuner on a multi-worker distribution strategy; unused otherwise.
        self.multi_worker = False
        self.should_report = True

    def __getattr__(self, name: str) -> Any:
        if name in SharedOracle._CONFIGURATION:
            return getattr(self._oracle, name)
        raise AttributeError(f"SharedOracle has no attribute {name!r}")

    @property
    def verbose(self) -> Any:
        """KerasTuner's console display of the oracle's trials."""
        return self._oracle.verbose

    @verbose.setter
    def verbose(self, value: Any) -> None:
        self._oracle.verbose = value

    def create_trial(self, tuner_id: str) -> keras_tuner.engine.trial.Trial:
        """The next trial for ``tuner_id`` (a retried one first); STOPPED marks the search as
        handing out no more trials; an IDLE answer comes back after a short wait."""

        def create(oracle: keras_tuner.Oracle) -> OracleOutcome[keras_tuner.engine.trial.Trial]:
            trial = oracle.create_trial(tuner_id)
            return OracleOutcome(
                trial, trials_exhausted=True if trial.status == TrialStatus.STOPPED else None
            )

        trial = self._step(create, saves=True)
        if trial.status == TrialStatus.IDLE:
            time.sleep(IDLE_WAIT_SECONDS)
        return trial

    def update_trial(
        self, trial_id: str, metrics: dict[str, float], step: int = 0
    ) -> keras_tuner.engine.trial.Trial:
        """Report a trial's metrics at ``step``."""
        return self._step(
            lambda oracle: OracleOutcome(oracle.update_trial(trial_id, metrics, step=step)),
            saves=False,
        )

    def end_trial(self, trial: keras_tuner.engine.trial.Trial) -> None:
        """End ``trial`` with its status (which the oracle may change: NaN is INVALID)."""
        self._step(lambda oracle: OracleOutcome(oracle.end_trial(trial)), saves=True)

    def update_space(self, hyperparameters: keras_tuner.HyperParameters) -> None:
        """Add new hyperparameters to the search space."""
        self._step(lambda oracle: OracleOutcome(oracle.update_space(hyperparameters)), saves=True)

    def get_space(self) -> keras_tuner.HyperParameters:
        """The search space (complete once the tuner populated it: it does not change)."""
        return self._oracle.get_space()

    def get_trial(self, trial_id: str) -> keras_tuner.engine.trial.Trial:
        """The trial ``trial_id`` as the oracle has it now: without a step once this process
        saw it ended (the tuner asks right after it ends one), since it never changes."""
        ended = self._parsed.ended_trial(trial_id)
        if ended is not None:
            return ended
        return self._step(lambda oracle: OracleOutcome(oracle.get_trial(trial_id)), saves=False)

    def get_best_trials(self, num_trials: int = 1) -> list[keras_tuner.engine.trial.Trial]:
        """The best ``num_trials`` trials so far."""
        return self._step(
            lambda oracle: OracleOutcome(oracle.get_best_trials(num_trials)), saves=False
        )

    def remaining_trials(self) -> int | None:
        """Trials left to create; None without a cap."""
        return self._step(lambda oracle: OracleOutcome(oracle.remaining_trials()), saves=False)

    def save(self) -> None:
        """Nothing to do: every step saves what it changed."""

    def reload(self) -> None:
        """Nothing to do: every step reloads the saved state first."""

    def _step(self, call: Callable[[keras_tuner.Oracle], OracleOutcome[T]], *, saves: bool) -> T:
        oracle = self._oracle

        def step(context: OracleContext) -> OracleOutcome[T]:
            load_saved_state(oracle, self._parsed)
            retry_no_ended_trial(oracle)
            requeued = requeue_trials_of_dead_tuners(oracle, context.live_slots)
            failed = end_failed_trials(oracle, context.failed_trials)
            try:
                with one_save_after(oracle):
                    outcome = call(oracle)
                if saves or requeued or failed:
                    oracle.save()
            except BaseException:
                # The call may have changed an ended trial in memory without saving it.
                self._parsed = ParsedTrials()
                raise
            self._parsed.note_ended(oracle)
            if requeued and outcome.trials_exhausted is None:
                # Someone has to run them: the search takes slots again.
                return OracleOutcome(outcome.value, trials_exhausted=False)
            return outcome

        return self._store.oracle_step(self._lease, step)
