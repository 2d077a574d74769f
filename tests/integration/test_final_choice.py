"""Which trials a finished search trains to the end and exports first, read from a real
KerasTuner oracle: promotions are followed back to the trial they started from."""

from __future__ import annotations

from pathlib import Path

import pytest

keras_tuner = pytest.importorskip("keras_tuner")

from nas.worker.export import chosen_trials  # noqa: E402


def finished_oracle(tmp_path: Path, trials: list[tuple[float, dict]]) -> keras_tuner.Oracle:
    """A random-search oracle whose trials completed with ``trials``' scores, in order, each
    with its extra tuner values (as ASHA's promotions carry; ``tuner/trial_id`` the index of
    an earlier trial)."""

    def build(hp: keras_tuner.HyperParameters) -> None:
        hp.Int("units", 1, 100)

    tuner = keras_tuner.RandomSearch(
        build,
        objective="val_accuracy",
        max_trials=len(trials),
        directory=str(tmp_path),
        project_name="choice",
        seed=0,
    )
    oracle = tuner.oracle
    oracle.update_space(_space())
    ids: list[str] = []
    for score, extra in trials:
        trial = oracle.create_trial("tuner0")
        ids.append(trial.trial_id)
        if "tuner/trial_id" in extra:
            extra = extra | {"tuner/trial_id": ids[extra["tuner/trial_id"]]}
        trial.hyperparameters.values.update(extra)
        oracle.update_trial(trial.trial_id, {"val_accuracy": score})
        trial.status = keras_tuner.engine.trial.TrialStatus.COMPLETED
        oracle.end_trial(trial)
    return oracle


def _space() -> keras_tuner.HyperParameters:
    space = keras_tuner.HyperParameters()
    space.Int("units", 1, 100)
    return space


def test_the_defaults_chain_leads_a_leader_within_the_noise(tmp_path: Path) -> None:
    oracle = finished_oracle(
        tmp_path,
        [
            (0.60, {"tuner/epochs": 3}),  # the defaults
            (0.62, {"tuner/epochs": 3}),
            (0.70, {"tuner/epochs": 9, "tuner/trial_id": 0}),  # the defaults, promoted
            (0.71, {"tuner/epochs": 9, "tuner/trial_id": 1}),  # the leader
        ],
    )
    defaults_promoted, leader = oracle.start_order[2], oracle.start_order[3]
    chosen = chosen_trials(oracle, 2, objective="val_accuracy", validation_images=400, margin=1.0)
    assert [trial.trial_id for trial in chosen] == [defaults_promoted, leader]
    plain = chosen_trials(oracle, 2, objective="val_accuracy", validation_images=400, margin=0)
    assert [trial.trial_id for trial in plain] == [leader, defaults_promoted]
    # A loss objective has no accuracy's noise to weigh: the score order.
    by_loss = chosen_trials(oracle, 2, objective="val_loss", validation_images=400, margin=1.0)
    assert [trial.trial_id for trial in by_loss] == [
        trial.trial_id for trial in oracle.get_best_trials(2)
    ]
