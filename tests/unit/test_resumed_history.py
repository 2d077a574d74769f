"""What a trial resumed from its backup goes on from: the best score of the epochs it kept,
and those epochs put before its fit's own, which KerasTuner's oracle scores it on."""

from __future__ import annotations

import math

import keras
import pytest

from nas.core.store.ranking import best_score
from nas.worker.tuning import EPOCH_SECONDS, prepend_epochs

KEPT = (
    {"loss": 0.9, "val_accuracy": 0.5, EPOCH_SECONDS: 2.0},
    {"loss": 0.7, "val_accuracy": 0.8, EPOCH_SECONDS: 1.0},
)


def fit_history(history: dict[str, list[float]]) -> keras.callbacks.History:
    made = keras.callbacks.History()
    made.history = history
    made.epoch = list(range(len(next(iter(history.values()), []))))
    return made


def test_the_kept_epochs_come_before_the_fit_s_without_the_journal_s_timing() -> None:
    history = fit_history({"loss": [0.6], "val_accuracy": [0.7], "accuracy": [0.75]})

    prepend_epochs(history, KEPT)

    assert history.history["loss"] == [0.9, 0.7, 0.6]
    assert history.history["val_accuracy"] == [0.5, 0.8, 0.7]
    assert [math.isnan(value) for value in history.history["accuracy"]] == [True, True, False]
    assert EPOCH_SECONDS not in history.history


def test_a_fit_resumed_past_its_last_epoch_has_the_kept_ones_alone() -> None:
    history = fit_history({})

    prepend_epochs(history, KEPT)

    assert history.history == {"loss": [0.9, 0.7], "val_accuracy": [0.5, 0.8]}


def test_a_fit_from_scratch_is_left_as_it_is() -> None:
    history = fit_history({"val_accuracy": [0.7]})
    prepend_epochs(history, ())
    assert history.history == {"val_accuracy": [0.7]}


@pytest.mark.parametrize(
    ("objective", "best"), [("val_accuracy", 0.8), ("val_loss", 0.2), ("accuracy", None)]
)
def test_the_best_score_is_the_objective_s_best_finite_value(
    objective: str, best: float | None
) -> None:
    epochs = [
        {"val_accuracy": 0.6, "val_loss": 0.4},
        {"val_accuracy": math.nan, "val_loss": math.inf},
        {"val_accuracy": 0.8, "val_loss": 0.2},
        {"val_loss": 0.3},
    ]
    assert best_score(epochs, objective) == best
