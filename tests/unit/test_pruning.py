"""The pruners as plain functions: which trial the median rule stops, and when a trial is
at chance level; and the search clock a budget runs on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nas.core.specs import SearchSpec
from nas.worker.budget import ExplorationClock, SearchClock, final_training_reserve
from nas.worker.pruning import chance_stop, early_stopping, median_stop


def accuracies(*values: float) -> list[dict[str, float]]:
    """A trial's per-epoch history with these validation accuracies."""
    return [{"val_accuracy": value} for value in values]


EARLIER = [accuracies(0.50, 0.60, 0.70), accuracies(0.40, 0.55, 0.65), accuracies(0.30, 0.35, 0.80)]


def test_the_median_rule_stops_the_trial_below_the_median_of_earlier_trials() -> None:
    # Best by epoch 2: 0.60, 0.55, 0.35 -> median 0.55. By epoch 3: 0.70, 0.65, 0.80 -> 0.70.
    kept = median_stop(accuracies(0.45, 0.56), EARLIER, "val_accuracy", maximize=True, min_epochs=2)
    stopped = median_stop(
        accuracies(0.45, 0.50), EARLIER, "val_accuracy", maximize=True, min_epochs=2
    )
    assert kept is None
    assert stopped == (
        "median rule: best val_accuracy 0.5 by epoch 2, below the median 0.55 of 3 earlier trials"
    )
    # Its best so far counts, not its last epoch: 0.72 at epoch 2 stays ahead at epoch 3.
    assert (
        median_stop(
            accuracies(0.3, 0.72, 0.60), EARLIER, "val_accuracy", maximize=True, min_epochs=2
        )
        is None
    )
    assert median_stop(
        accuracies(0.3, 0.62, 0.60), EARLIER, "val_accuracy", maximize=True, min_epochs=2
    ) == (
        "median rule: best val_accuracy 0.62 by epoch 3, below the median 0.7 of 3 earlier trials"
    )


def test_the_median_rule_waits_for_epochs_and_for_earlier_trials() -> None:
    worst = accuracies(0.01, 0.01, 0.01)
    assert median_stop(worst[:1], EARLIER, "val_accuracy", maximize=True, min_epochs=2) is None
    assert median_stop(worst, EARLIER[:1], "val_accuracy", maximize=True, min_epochs=2) is None
    # Only trials that reached the epoch count: two shorter ones leave one to compare with.
    short = [accuracies(0.9), accuracies(0.9), EARLIER[0]]
    assert median_stop(worst[:2], short, "val_accuracy", maximize=True, min_epochs=2) is None


def test_the_median_rule_on_a_loss_stops_the_higher_one() -> None:
    earlier = [[{"val_loss": 1.0}, {"val_loss": 0.8}], [{"val_loss": 1.2}, {"val_loss": 0.9}]]
    high = [{"val_loss": 1.1}, {"val_loss": 1.0}]
    low = [{"val_loss": 1.1}, {"val_loss": 0.7}]
    assert median_stop(high, earlier, "val_loss", maximize=False, min_epochs=2) is not None
    assert median_stop(low, earlier, "val_loss", maximize=False, min_epochs=2) is None


def test_a_trial_still_at_chance_after_the_first_epochs_stops() -> None:
    # Five classes: chance is 0.2, the margin 0.05.
    at_chance = accuracies(0.2, 0.204, 0.25)
    assert chance_stop(at_chance[:2], classes=5, min_epochs=3) is None
    assert chance_stop(at_chance, classes=5, min_epochs=3) == (
        "chance level: best val_accuracy 0.25 after 3 epochs, at most 0.25 (1/5 classes + 0.05)"
    )
    assert chance_stop(accuracies(0.2, 0.2, 0.26), classes=5, min_epochs=3) is None
    assert chance_stop([{"loss": 1.0}] * 3, classes=5, min_epochs=3) is None


def test_the_search_clock_counts_from_the_first_start() -> None:
    started = datetime.now(UTC) - timedelta(seconds=30)
    clock = SearchClock(started_at=started, seconds=100)
    assert 30 <= clock.spent() < 40
    assert 60 < clock.remaining() <= 70
    assert not clock.expired()
    spent = SearchClock(started_at=started, seconds=20)
    assert spent.expired() and spent.remaining() == 0
    unbounded = SearchClock(started_at=started, seconds=None)
    assert not unbounded.expired() and unbounded.remaining() == pytest.approx(float("inf"))


def test_patience_does_not_judge_a_cosine_schedule_on_its_start() -> None:
    spec = SearchSpec.model_validate(
        {"dataset": {"path": "/data"}, "tuner": {"epochs": 25, "patience": 5}}
    )
    (cosine,) = early_stopping(spec, {"lr_schedule": "cosine"})
    (constant,) = early_stopping(spec, {"lr_schedule": "constant"})
    assert cosine.start_from_epoch == 12 and cosine.patience == 5
    assert constant.start_from_epoch == 0


def test_a_budget_plans_the_trials_and_epochs_the_body_leaves_out() -> None:
    def tuner(**body: object) -> tuple[int, int]:
        spec = SearchSpec.model_validate({"dataset": {"path": "/data"}, **body})
        return spec.tuner.max_trials, spec.tuner.epochs

    assert tuner() == (10, 10)
    assert tuner(budget={"seconds": 1200}) == (40, 20)
    assert tuner(budget={"seconds": 20}) == (2, 20)
    assert tuner(budget={"seconds": 1200}, tuner={"epochs": 5}) == (40, 5)
    assert tuner(budget={"seconds": 1200}, tuner={"max_trials": 3}) == (3, 20)


def test_the_final_training_reserve_grows_where_epochs_are_dear() -> None:
    def reserve(epoch_seconds: float | None, exported_models: int = 0) -> float:
        return final_training_reserve(
            1200,
            final_epochs_needed=60,
            epoch_seconds=epoch_seconds,
            exported_models=exported_models,
        )

    # 60 epochs of 4 s fit in 40% of 1,200 s; of 19 s they would take 95%, capped at 90%.
    # The export after them keeps 1 of their epochs, and 5 s for each model it writes.
    assert reserve(4.0) == pytest.approx((480 + 4.0) / 1200)
    assert reserve(10.0) == pytest.approx((600 + 10.0) / 1200)
    assert reserve(19.0) == 0.9
    assert reserve(None) == 0.4
    assert reserve(10.0, exported_models=3) == pytest.approx((600 + 10.0 + 3 * 5.0) / 1200)
    assert reserve(None, exported_models=3) == pytest.approx((480 + 3 * 5.0) / 1200)


def test_exploration_ends_where_the_first_trial_s_epochs_say() -> None:
    started = datetime.now(UTC) - timedelta(seconds=300)
    looked_up: list[float | None] = [None, 10.0]
    clock = ExplorationClock(
        SearchClock(started, 1000),
        final_epochs_needed=60,
        exported_models=0,
        epoch_seconds=lambda: looked_up.pop(0),
        look_every_seconds=0.0,
    )
    # Not timed yet: the default share, 600 s of exploration, 300 s of it spent.
    assert clock.seconds == pytest.approx(600)
    # 60 epochs of 10 s and 1 for the export: 610 s of the budget kept, 390 s of exploration;
    # then no more looks.
    assert clock.seconds == pytest.approx(390) and not looked_up
    assert clock.reserve() == pytest.approx(0.61) and not clock.expired()
    assert clock.stop_reason() == (
        "exploration's share of the search's budget ran out (390 of 1000 s; the rest trains "
        "the best architecture to the end)"
    )
    spent = ExplorationClock(
        SearchClock(started, 600),
        final_epochs_needed=60,
        exported_models=0,
        epoch_seconds=lambda: 5.0,
    )
    assert spent.expired(), "300 s spent of 600 - 300 s"
    unbounded = ExplorationClock(
        SearchClock(started, None),
        final_epochs_needed=60,
        exported_models=0,
        epoch_seconds=lambda: 5.0,
    )
    assert unbounded.seconds is None and not unbounded.expired()
