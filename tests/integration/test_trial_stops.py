"""Why a trial stops before its last epoch, through a real Keras fit: the epoch reporter
applies the budget's deadline, the median rule (against earlier trials in a real store) and
notes early stopping, and each reason reaches the trial's record."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import keras
import numpy as np
import pytest

from nas.core.specs import SearchSpec
from nas.core.store import SlotLease, Store, TrialStatus
from nas.worker.budget import SearchClock
from nas.worker.journal import TrialJournal
from nas.worker.pruning import StopRules, early_stopping
from nas.worker.search import exploration_clock
from nas.worker.signals import Interruptions
from nas.worker.tuning import EPOCH_SECONDS, TRAIN_SECONDS, EpochReporter
from tests.support.leases import join

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

#: Validation labels: 7 of class 0 in 10, so a model that always says 0 scores 0.7.
VALIDATION_LABELS = np.array([0] * 7 + [1] * 3)


def leased_search(
    store: Store, budget: dict[str, float] | None = None, **tuner: Any
) -> tuple[SearchSpec, SlotLease]:
    spec = SearchSpec.model_validate(
        {"dataset": {"path": "/data"}, "tuner": tuner, "budget": budget}
    )
    store.create_search(spec.model_dump(mode="json"), trials_planned=3, owner="stops")
    return spec, join(store, "stops-worker", lease_seconds=600)


def fit_always_class_zero(
    journal: TrialJournal,
    rules: StopRules,
    trial_id: str,
    epochs: int,
    later_callbacks: list[keras.callbacks.Callback] | None = None,
) -> None:
    """Train a model that always predicts class 0 (nothing it can learn) for ``epochs``."""
    journal.trial_started(trial_id, {})
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(
                2,
                activation="softmax",
                kernel_initializer="zeros",
                bias_initializer=keras.initializers.Constant([1.0, 0.0]),
                trainable=False,
            ),
        ]
    )
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    images = np.zeros((16, 4), "float32")
    model.fit(
        images,
        np.array([0, 1] * 8),
        validation_data=(np.zeros((10, 4), "float32"), VALIDATION_LABELS),
        epochs=epochs,
        batch_size=4,
        verbose=0,
        callbacks=[
            *early_stopping(rules.spec, {}),
            EpochReporter(journal, trial_id, Interruptions(), rules),
            *(later_callbacks or []),
        ],
    )
    journal.trial_ended(trial_id, completed=True, error=None)


def test_the_median_rule_stops_a_trial_below_earlier_ones(store: Store) -> None:
    # The median rule prunes random and bayesian searches (ASHA judges trials at its rungs).
    spec, lease = leased_search(store, algorithm="random", patience=0, min_epochs_before_pruning=2)
    journal = TrialJournal(store, lease, spec.objective)
    for earlier in ("00", "01"):
        journal.trial_started(earlier, {})
        for epoch in range(3):
            journal.epoch_ended(earlier, epoch, {"val_accuracy": 0.9}, params=10)
        journal.trial_ended(earlier, completed=True, error=None)
    rules = StopRules(spec, SearchClock(datetime.now(UTC), None), classes=2)

    fit_always_class_zero(journal, rules, "02", epochs=6)

    trial = store.list_trials(lease.search_id)[-1]
    assert (trial.trial_id, trial.status, trial.epochs) == ("02", TrialStatus.COMPLETED, 2)
    assert trial.stop_reason == (
        "median rule: best val_accuracy 0.7 by epoch 2, below the median 0.9 of 2 earlier trials"
    )


def test_early_stopping_and_the_budget_say_why_they_stopped_a_trial(store: Store) -> None:
    spec, lease = leased_search(store, patience=1, pruning=False)
    journal = TrialJournal(store, lease, spec.objective)
    unbounded = StopRules(spec, SearchClock(datetime.now(UTC), None), classes=2)
    spent = StopRules(spec, SearchClock(datetime.now(UTC) - timedelta(seconds=60), 30), classes=2)

    fit_always_class_zero(journal, unbounded, "00", epochs=6)
    fit_always_class_zero(journal, spent, "01", epochs=6)

    patient, cut = store.list_trials(lease.search_id)
    assert patient.epochs == 2  # no better val_accuracy after the first epoch
    assert patient.stop_reason == "patience: no better val_accuracy for 1 epochs"
    assert cut.epochs == 1  # stopped at its first batch, validated once
    assert cut.stop_reason == "the search's budget of 30 s ran out"


def test_exploration_leaves_the_final_training_what_the_first_trial_s_epochs_need(
    store: Store,
) -> None:
    spec, lease = leased_search(store, {"seconds": 1000}, algorithm="random", epochs=20)
    journal = TrialJournal(store, lease, spec.objective)
    clock = SearchClock(datetime.now(UTC), 1000)

    def exploration_seconds() -> float | None:
        # A new clock each time: one looks up the first trial's epochs at once.
        explored = exploration_clock(
            store, lease.search_id, spec, clock, trial_images=80, final_images=100
        )
        return explored.seconds

    # Its epochs: 10 s of training on 80 photos, then 2 s of validation.
    timings = {"epoch_seconds": 12.0, "train_seconds": 10.0}
    journal.trial_started("00", {})
    for epoch in range(2):
        journal.epoch_ended("00", epoch, {"val_accuracy": 0.5, **timings}, params=10)
    # Running, two epochs: its first one compiled too. The default share is kept: 40% of the
    # budget, and 5 s for each of the 3 models the export writes.
    assert exploration_seconds() == pytest.approx(1000 - 400 - 3 * 5)
    journal.epoch_ended("00", 2, {"val_accuracy": 0.5, **timings}, params=10)
    # 3 x 20 epochs of 12.5 s (10 s on 80 photos, on 100, validating none): 750 s kept for
    # them, and 1 of them and 15 s for the export.
    assert exploration_seconds() == pytest.approx(1000 - 750 - (12.5 + 3 * 5))
    journal.trial_started("01", {})
    journal.epoch_ended("01", 0, {"val_accuracy": 0.5, "epoch_seconds": 1.0}, params=10)
    assert exploration_seconds() == pytest.approx(222.5), "the first trial's epochs, not later ones"
    no_final = spec.model_copy(update={"final_top_k": 0})
    assert exploration_clock(
        store, lease.search_id, no_final, clock, trial_images=80, final_images=100
    ).seconds == pytest.approx(1000)


class SlowValidation(keras.callbacks.Callback):
    """Makes each validation of a fit last at least ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        time.sleep(self.seconds)


def test_each_epoch_times_its_training_pass_apart_from_its_validation(store: Store) -> None:
    # A final training validates on nothing: its epochs are planned from the training passes.
    spec, lease = leased_search(store, patience=0, pruning=False)
    journal = TrialJournal(store, lease, spec.objective)
    rules = StopRules(spec, SearchClock(datetime.now(UTC), None), classes=2)

    fit_always_class_zero(journal, rules, "00", epochs=3, later_callbacks=[SlowValidation(0.4)])

    [trial] = store.list_trials(lease.search_id)
    assert len(trial.history) == 3
    for epoch in trial.history:
        assert 0 < epoch[TRAIN_SECONDS] <= epoch[EPOCH_SECONDS] - 0.4, epoch
