"""How long the final trainings of a search with a time budget may run."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nas.core.store import TrialRecord, TrialStatus
from nas.worker.budget import EXPORT_RESERVE_EPOCHS, EXPORT_RESERVE_SECONDS_PER_MODEL
from nas.worker.final_training import (
    next_epoch_seconds,
    plan_final_training,
    seconds_per_epoch,
    stops_at_deadline,
)
from nas.worker.tuning import EPOCH_SECONDS, TRAIN_SECONDS


def trial_of(epoch_seconds: list[float], train_seconds: list[float] | None = None) -> TrialRecord:
    now = datetime.now(UTC)
    return TrialRecord(
        search_id="s",
        trial_id="t",
        status=TrialStatus.COMPLETED,
        hyperparameters={},
        score=0.5,
        params=1000,
        epochs=len(epoch_seconds),
        seconds=sum(epoch_seconds),
        history=tuple(
            {EPOCH_SECONDS: seconds}
            if train_seconds is None
            else {EPOCH_SECONDS: seconds, TRAIN_SECONDS: train_seconds[epoch]}
            for epoch, seconds in enumerate(epoch_seconds)
        ),
        error=None,
        started_at=now,
        finished_at=now,
    )


def test_the_export_reserve_comes_off_the_budget_before_it_is_shared() -> None:
    trial = trial_of([9.0, 4.0, 4.0])  # 4 s an epoch on 80 photos: 5 s on 100

    sizes = {"trial_images": 80, "final_images": 100, "exported_models": 3}

    first = plan_final_training(trial, remaining_seconds=110.0, trainings_left=2, **sizes)
    last = plan_final_training(trial, remaining_seconds=50.0, trainings_left=1, **sizes)

    reserve = EXPORT_RESERVE_EPOCHS * 5.0 + 3 * EXPORT_RESERVE_SECONDS_PER_MODEL
    assert first.seconds == pytest.approx((110.0 - reserve) / 2)
    assert first.epochs == int((110.0 - reserve) / 2 // 5.0)
    assert (last.seconds, last.epochs) == (pytest.approx(50.0 - reserve), int((50 - reserve) // 5))


def test_a_final_epoch_lasts_as_long_as_the_trial_s_training_passes_not_its_validation() -> None:
    # Validated on 20 photos after each pass over 80: 3 s of training, 1 s of validation.
    trial = trial_of([9.0, 4.0, 4.0, 4.0], train_seconds=[7.0, 3.0, 3.0, 3.0])

    # The final training trains on the 100 photos and validates on none.
    assert seconds_per_epoch(trial, trial_images=80, final_images=100) == pytest.approx(3.75)
    # The mean past the first epoch: the sum of the epochs is what a plan must fit.
    assert seconds_per_epoch(trial_of([9.0, 4.0, 8.0, 6.0]), 80, 80) == pytest.approx(6.0)
    # A history from before the training pass was timed alone: its whole epochs.
    assert seconds_per_epoch(trial_of([9.0, 4.0, 4.0]), 80, 100) == pytest.approx(5.0)
    assert seconds_per_epoch(trial_of([]), 80, 100) is None


def test_without_a_budget_the_trials_epochs_and_no_deadline() -> None:
    plan = plan_final_training(
        trial_of([9.0, 4.0, 4.0]),
        remaining_seconds=None,
        trainings_left=1,
        trial_images=80,
        final_images=100,
        exported_models=1,
    )

    assert (plan.epochs, plan.seconds) == (3, None)


def test_no_time_past_the_reserve_is_no_epoch() -> None:
    plan = plan_final_training(
        trial_of([4.0, 4.0]),
        remaining_seconds=EXPORT_RESERVE_EPOCHS * 4.0 + EXPORT_RESERVE_SECONDS_PER_MODEL,
        trainings_left=1,
        trial_images=80,
        final_images=80,
        exported_models=1,
    )

    assert (plan.epochs, plan.seconds) == (0, 0.0)


@pytest.mark.parametrize(
    ("now", "deadline", "last_epoch", "stops"),
    [
        (100.0, None, 50.0, False),
        (100.0, 120.0, 10.0, False),
        (100.0, 120.0, 20.0, False),  # the next epoch ends at the deadline
        (100.0, 120.0, 20.5, True),
        (130.0, 120.0, 1.0, True),
    ],
)
def test_a_final_training_stops_before_an_epoch_would_end_past_its_deadline(
    now: float, deadline: float | None, last_epoch: float, stops: bool
) -> None:
    assert stops_at_deadline(now, deadline, last_epoch) is stops


def test_the_first_epoch_s_compile_does_not_stop_a_final_training() -> None:
    # Its first epoch compiled the step (9 s); its trial's training passes foretold 3 s.
    assert next_epoch_seconds(1, 9.0, planned=3.0) == 3.0
    assert next_epoch_seconds(1, 2.0, planned=3.0) == 2.0
    assert next_epoch_seconds(1, 9.0, planned=None) == 9.0
    # Past the first, the last epoch says.
    assert next_epoch_seconds(2, 4.0, planned=3.0) == 4.0
