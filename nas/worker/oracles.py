"""The oracles of this service's searches.

Every algorithm tries the space's defaults first (a known-good small convnet), then the
seeded configurations (warm start: the best of the owner's earlier searches of the same
photos), then its own proposals. ``asha`` is asynchronous successive halving (Li et al.,
2018): rungs over epochs, a trial promoted to the next rung as soon as its rung has enough
results for it to be in the top 1/factor, resumed from its checkpoint the way KerasTuner's
Hyperband resumes ``tuner/trial_id``. KerasTuner's internals are reached only through
``nas.worker.keras_tuner_adapter``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras_tuner
from keras_tuner.engine.hyperparameters import Boolean, Choice, Fixed, Float, Int

from nas.core.specs import ASHA_REDUCTION_FACTOR, SearchSpec, asha_rungs
from nas.worker.keras_tuner_adapter import SeededDraws

#: The hyperparameters KerasTuner's Hyperband tuner reads (and ASHA sets) on a trial.
EPOCHS, INITIAL_EPOCH, RESUMED_FROM, RUNG = (
    "tuner/epochs",
    "tuner/initial_epoch",
    "tuner/trial_id",
    "tuner/round",
)


def configuration_in(space: keras_tuner.HyperParameters, wanted: Mapping[str, Any]) -> dict:
    """The values of ``space``'s active hyperparameters: ``wanted``'s where the space allows
    them, its defaults elsewhere (``{}`` gives the space's defaults)."""
    chosen = keras_tuner.HyperParameters()
    for hyperparameter in space.space:
        chosen.merge([hyperparameter])
        if chosen.is_active(hyperparameter):
            value = wanted.get(hyperparameter.name, hyperparameter.default)
            allowed = _allows(hyperparameter, value)
            chosen.values[hyperparameter.name] = value if allowed else hyperparameter.default
    return dict(chosen.values)


def _allows(hyperparameter: Any, value: Any) -> bool:
    if isinstance(hyperparameter, Fixed):
        return value == hyperparameter.value
    if isinstance(hyperparameter, Boolean):
        return isinstance(value, bool)
    if isinstance(hyperparameter, Int | Float):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return number and hyperparameter.min_value <= value <= hyperparameter.max_value
    if isinstance(hyperparameter, Choice):
        return value in hyperparameter.values and type(value) is type(hyperparameter.default)
    return False


class SeedsFirst(SeededDraws):
    """Mixin for an oracle: its first draws are the space's defaults, then ``seeded``
    configurations (each fitted to the space), each skipped if a trial already had it."""

    def __init__(self, *args: Any, seeded: Sequence[Mapping[str, Any]] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seeded = [{}, *seeded]

    def seeded_values(self) -> dict[str, Any] | None:
        """The first seeded configuration no trial has had yet."""
        for wanted in self.seeded:
            values = configuration_in(self.hyperparameters, wanted)  # type: ignore[attr-defined]
            if not self.tried_before(values):
                return values
        return None


@dataclass(frozen=True)
class RungResult:
    """A finished trial's score at its rung (0 is the lowest)."""

    trial_id: str
    rung: int
    score: float


def next_promotion(
    results: Iterable[RungResult],
    promoted: Collection[str],
    *,
    rungs: int,
    factor: int,
    maximize: bool,
) -> RungResult | None:
    """ASHA's promotion rule: from the highest rung below the top down, the best result in
    its rung's top 1/``factor`` (of the results in so far) not ``promoted`` yet, or None."""
    results = list(results)
    sign = -1.0 if maximize else 1.0
    for rung in reversed(range(rungs - 1)):
        here = sorted(
            (result for result in results if result.rung == rung),
            key=lambda result: (sign * result.score, result.trial_id),
        )
        for result in here[: len(here) // factor]:
            if result.trial_id not in promoted:
                return result
    return None


class AshaOracle(SeedsFirst, keras_tuner.oracles.HyperbandOracle):
    """Asynchronous successive halving over ``asha_rungs(max_epochs, factor)``: a promotion
    whenever a rung allows one, else a new configuration at the lowest rung, up to
    ``configurations`` of them. Hyperband's oracle lends its trial hyperparameters (and its
    hash of a configuration, which leaves the epochs out); its brackets go unused."""

    def __init__(self, *, configurations: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.configurations = configurations

    @property
    def rung_epochs(self) -> list[int]:
        """The cumulative epochs of each rung, lowest first."""
        return asha_rungs(self.max_epochs, self.factor, self.min_epochs)

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        """A promotion, else a new configuration; IDLE while running trials may still allow a
        promotion, STOPPED when nothing is left."""
        rungs = self.rung_epochs
        trials = list(self.trials.values())
        chosen = next_promotion(
            (
                RungResult(trial.trial_id, trial.hyperparameters.values[RUNG], trial.score)
                for trial in trials
                if trial.status == "COMPLETED" and trial.score is not None
            ),
            {trial.hyperparameters.values.get(RESUMED_FROM) for trial in trials},
            rungs=len(rungs),
            factor=self.factor,
            maximize=self.objective.direction == "max",
        )
        if chosen is not None:
            values = dict(self.trials[chosen.trial_id].hyperparameters.values)
            rung = chosen.rung + 1
            values |= {
                RESUMED_FROM: chosen.trial_id,
                INITIAL_EPOCH: rungs[rung - 1],
                EPOCHS: rungs[rung],
                RUNG: rung,
            }
            return {"status": "RUNNING", "values": values}
        started = sum(1 for trial in trials if trial.hyperparameters.values.get(RUNG) == 0)
        values = self.draw_values() if started < self.configurations else None
        if values is not None:
            values |= {INITIAL_EPOCH: 0, EPOCHS: rungs[0], RUNG: 0}
            return {"status": "RUNNING", "values": values}
        return {"status": "IDLE" if self.ongoing_trials else "STOPPED"}


class SeededRandomSearchOracle(SeedsFirst, keras_tuner.oracles.RandomSearchOracle):
    """KerasTuner's random search, seeded configurations first."""


class SeededBayesianOracle(SeedsFirst, keras_tuner.oracles.BayesianOptimizationOracle):
    """KerasTuner's Bayesian optimization, seeded configurations among its initial points."""


class SeededHyperbandOracle(SeedsFirst, keras_tuner.oracles.HyperbandOracle):
    """KerasTuner's Hyperband, seeded configurations first in its first bracket."""


def build_oracle(
    spec: SearchSpec, *, seeded: Sequence[Mapping[str, Any]] = ()
) -> keras_tuner.Oracle:
    """The oracle of ``spec``'s algorithm, drawing the space's defaults and then ``seeded``
    configurations first."""
    tuner = spec.tuner
    options: dict[str, Any] = {
        "objective": keras_tuner.Objective(
            spec.objective, direction="max" if spec.maximize else "min"
        ),
        "seed": tuner.seed,
        # A failed trial (over the parameter cap, out of memory) shows its error on the
        # leaderboard; KerasTuner's default would also fail the search after 3 in a row, and
        # draws over the cap often come in runs. A search whose trials all fail still fails.
        "max_consecutive_failed_trials": None,
        "seeded": seeded,
    }
    if tuner.algorithm == "asha":
        return AshaOracle(
            configurations=tuner.max_trials,
            max_epochs=tuner.epochs,
            factor=ASHA_REDUCTION_FACTOR,
            **options,
        )
    if tuner.algorithm == "hyperband":
        return SeededHyperbandOracle(
            max_epochs=tuner.epochs, factor=tuner.hyperband_factor, **options
        )
    if tuner.algorithm == "bayesian":
        return SeededBayesianOracle(
            max_trials=tuner.max_trials, num_initial_points=tuner.initial_points, **options
        )
    return SeededRandomSearchOracle(max_trials=tuner.max_trials, **options)
