"""ASHA's promotion rule with made-up results, and the oracle that applies it to KerasTuner
trials (which trial runs next, with which epochs, resumed from which trial)."""

from __future__ import annotations

from pathlib import Path

import keras_tuner
import pytest

from nas.core.specs import SearchSpec, asha_rungs, asha_trials
from nas.worker.oracles import AshaOracle, RungResult, next_promotion


def results(rung: int, scores: dict[str, float]) -> list[RungResult]:
    return [RungResult(trial_id, rung, score) for trial_id, score in scores.items()]


def promote(found: list[RungResult], promoted: set[str] = frozenset(), **options) -> str | None:
    options = {"rungs": 3, "factor": 3, "maximize": True} | options
    chosen = next_promotion(found, promoted, **options)
    return None if chosen is None else chosen.trial_id


def test_rungs_divide_the_most_epochs_by_the_factor_down_to_one_epoch() -> None:
    assert asha_rungs(27, 3) == [1, 3, 9, 27]
    assert asha_rungs(10, 3) == [2, 4, 10]
    assert asha_rungs(9, 3) == [1, 3, 9]
    assert asha_rungs(3, 3) == [1, 3]
    assert asha_rungs(2, 3) == [2]
    assert asha_rungs(1, 3) == [1]
    # 10 configurations over [2, 4, 10]: 10 at the first rung, 3 promoted, then 1.
    assert asha_trials(10, 10, 3) == 14
    spec = SearchSpec.model_validate({"dataset": {"path": "/data"}})
    assert spec.tuner.algorithm == "asha"
    assert spec.tuner.planned_trials() == 14


def test_a_rung_promotes_only_once_its_top_third_is_known() -> None:
    assert promote(results(0, {"a": 0.9, "b": 0.5})) is None
    assert promote(results(0, {"a": 0.2, "b": 0.5, "c": 0.4})) == "b"


def test_each_trial_is_promoted_once_and_the_next_best_when_the_rung_grows() -> None:
    three = results(0, {"a": 0.2, "b": 0.5, "c": 0.4})
    assert promote(three, {"b"}) is None
    # A result below the best ones leaves the top third as it was...
    assert promote([*three, *results(0, {"d": 0.3})], {"b"}) is None
    # ...one above it is in the top third at once: ASHA does not wait for a bracket.
    assert promote([*three, *results(0, {"d": 0.7})], {"b"}) == "d"
    six = [*three, *results(0, {"d": 0.45, "e": 0.1, "f": 0.3})]
    assert promote(six, {"b"}) == "d"
    assert promote(six, {"b", "d"}) is None


def test_higher_rungs_promote_first_and_the_top_rung_never() -> None:
    found = [
        *results(0, {"a": 0.2, "b": 0.5, "c": 0.4}),
        *results(1, {"x": 0.6, "y": 0.8, "z": 0.7}),
    ]
    assert promote(found) == "y"
    assert promote(found, {"y"}) == "b"
    top = results(2, {"p": 0.9, "q": 0.8, "r": 0.7})
    assert promote(top) is None


def test_a_loss_promotes_its_lowest() -> None:
    assert promote(results(0, {"a": 0.2, "b": 0.5, "c": 0.4}), maximize=False) == "a"


def _finish(oracle: keras_tuner.Oracle, trial_id: str, score: float) -> None:
    oracle.update_trial(trial_id, {"val_accuracy": score}, step=0)
    trial = oracle.get_trial(trial_id)
    trial.status = "COMPLETED"
    oracle.end_trial(trial)


def test_the_oracle_promotes_the_best_of_three_resuming_it_for_more_epochs(
    tmp_path: Path,
) -> None:
    oracle = AshaOracle(
        objective=keras_tuner.Objective("val_accuracy", "max"),
        configurations=4,
        max_epochs=3,
        factor=3,
        seed=1,
    )

    def build(hp: keras_tuner.HyperParameters) -> None:
        hp.Int("units", 1, 100)

    keras_tuner.Tuner(oracle=oracle, hypermodel=build, directory=str(tmp_path), project_name="p")
    started = []
    for score in (0.3, 0.6, 0.4):
        trial = oracle.create_trial("tuner0")
        assert trial.hyperparameters.values["tuner/epochs"] == 1
        assert trial.hyperparameters.values["tuner/initial_epoch"] == 0
        assert "tuner/trial_id" not in trial.hyperparameters.values
        started.append(trial)
        _finish(oracle, trial.trial_id, score)

    promoted = oracle.create_trial("tuner0")
    values = promoted.hyperparameters.values
    assert values["tuner/trial_id"] == started[1].trial_id
    assert (values["tuner/initial_epoch"], values["tuner/epochs"]) == (1, 3)
    assert values["units"] == started[1].hyperparameters.values["units"]
    _finish(oracle, promoted.trial_id, 0.7)

    fourth = oracle.create_trial("tuner0")  # the last configuration, at the first rung
    assert fourth.hyperparameters.values["tuner/epochs"] == 1
    _finish(oracle, fourth.trial_id, 0.35)
    # Four results at the first rung make room for one promotion only, spent already.
    assert oracle.create_trial("tuner0").status == "STOPPED"


@pytest.mark.parametrize("algorithm", ["asha", "random", "bayesian", "hyperband"])
def test_every_algorithm_draws_the_defaults_then_the_seeded_configurations_first(
    tmp_path: Path, algorithm: str
) -> None:
    from nas.worker.oracles import build_oracle

    def build(hp: keras_tuner.HyperParameters) -> None:
        hp.Int("units", 1, 100, default=7)
        hp.Choice("head", ["gap", "dense"])
        hp.Float("rate", 0.0, 1.0, default=0.5)

    spec = SearchSpec.model_validate(
        {"dataset": {"path": "/data"}, "tuner": {"algorithm": algorithm, "max_trials": 5}}
    )
    seeded = [
        {"units": 42, "head": "dense", "rate": 0.25, "tuner/epochs": 9},
        {"units": 420, "head": "gap"},  # out of the space: the default instead
    ]
    oracle = build_oracle(spec, seeded=seeded)
    keras_tuner.Tuner(oracle=oracle, hypermodel=build, directory=str(tmp_path), project_name="p")

    drawn = []
    for score in (0.5, 0.6, 0.7):
        trial = oracle.create_trial("tuner0")
        drawn.append({k: v for k, v in trial.hyperparameters.values.items() if "/" not in k})
        _finish(oracle, trial.trial_id, score)

    # The second seed, fitted to the space, is the defaults again: drawn once only.
    defaults = {"units": 7, "head": "gap", "rate": 0.5}
    assert drawn[:2] == [defaults, {"units": 42, "head": "dense", "rate": 0.25}]
    assert drawn[2] not in drawn[:2]


def _reloaded_tuner(spec: SearchSpec, directory: Path) -> keras_tuner.Tuner:
    """A tuner of ``spec``'s oracle on the project in ``directory``, reloaded if it is there,
    as a worker builds it (``overwrite=False``)."""
    from nas.worker.oracles import build_oracle

    def build(hp: keras_tuner.HyperParameters) -> None:
        hp.Int("units", 1, 100)

    return keras_tuner.Tuner(
        oracle=build_oracle(spec),
        hypermodel=build,
        directory=str(directory),
        project_name="p",
        overwrite=False,
    )


def _run_until_stopped(tuner: keras_tuner.Tuner, scores: list[float]) -> list:
    """Trials the oracle hands out, each finished with the next score, until it stops."""
    ran = []
    while (trial := tuner.oracle.create_trial("tuner0")).status != "STOPPED":
        ran.append(trial)
        _finish(tuner.oracle, trial.trial_id, scores[len(ran) - 1])
    tuner.save()
    return ran


def test_an_extended_asha_search_adds_configurations_and_promotes_among_all_results(
    tmp_path: Path,
) -> None:
    def spec(configurations: int) -> SearchSpec:
        tuner = {"max_trials": configurations, "epochs": 3, "seed": 1}
        return SearchSpec.model_validate({"dataset": {"path": "/data"}, "tuner": tuner})

    # Two configurations at the first rung: too few for a top third, no promotion.
    first = _run_until_stopped(_reloaded_tuner(spec(2), tmp_path), [0.3, 0.6])
    assert [trial.hyperparameters.values["tuner/round"] for trial in first] == [0, 0]

    # Extended by two: the same oracle, reloaded with four configurations.
    later = _run_until_stopped(_reloaded_tuner(spec(4), tmp_path), [0.4, 0.5, 0.45])

    rungs = [trial.hyperparameters.values["tuner/round"] for trial in later]
    assert rungs == [0, 1, 0], "three results make room for a promotion"
    assert later[1].hyperparameters.values["tuner/trial_id"] == first[1].trial_id
    ids = [trial.trial_id for trial in [*first, *later]]
    assert len(set(ids)) == len(ids), "no trial id is handed out twice"
    assert len(ids) == spec(4).tuner.planned_trials()


@pytest.mark.parametrize("algorithm", ["random", "bayesian"])
def test_an_extended_search_runs_only_the_trials_added(tmp_path: Path, algorithm: str) -> None:
    def spec(trials: int) -> SearchSpec:
        tuner = {"algorithm": algorithm, "max_trials": trials, "seed": 1}
        return SearchSpec.model_validate({"dataset": {"path": "/data"}, "tuner": tuner})

    first = _run_until_stopped(_reloaded_tuner(spec(2), tmp_path), [0.3, 0.6])
    later = _run_until_stopped(_reloaded_tuner(spec(4), tmp_path), [0.4, 0.5])

    ids = [trial.trial_id for trial in [*first, *later]]
    assert len(ids) == 4 and len(set(ids)) == 4
    values = [trial.hyperparameters.values["units"] for trial in [*first, *later]]
    assert len(set(values)) == 4, "no configuration is tried again"
