"""A search's oracle shared by slots through the store: what takes a step under the lock."""

from __future__ import annotations

from pathlib import Path

import keras_tuner
import pytest

from nas.core.store import LeaseLostError, SlotLease, Store
from nas.worker.shared_oracle import SharedOracle
from tests.support.leases import join


def shared_oracle(store: Store, lease: SlotLease, directory: Path) -> SharedOracle:
    space = keras_tuner.HyperParameters()
    space.Int("units", 1, 100)
    oracle = keras_tuner.oracles.RandomSearchOracle(
        objective=keras_tuner.Objective("score", "max"),
        max_trials=10,
        hyperparameters=space,
        seed=1,
    )
    oracle._set_project_dir(str(directory), "tuner")
    return SharedOracle(oracle, store, lease)


def test_a_trial_the_slot_ended_answers_get_trial_without_a_step(
    store: Store, tmp_path: Path
) -> None:
    store.create_search({"objective": "score"}, trials_planned=10, owner="alice")
    first, second = join(store, "w1"), join(store, "w2")
    mine, theirs = shared_oracle(store, first, tmp_path), shared_oracle(store, second, tmp_path)
    ended = mine.create_trial(first.slot_id)
    running = theirs.create_trial(second.slot_id)
    mine.update_trial(ended.trial_id, {"score": 0.75})
    ended.status = "COMPLETED"
    mine.end_trial(ended)
    # Without its slot, every step of this oracle fails; the search runs on with the other.
    store.leave_slot(first, died=False, max_attempts=3)

    answer = mine.get_trial(ended.trial_id)

    assert (answer.status, answer.score) == ("COMPLETED", 0.75)
    with pytest.raises(LeaseLostError):
        mine.get_trial(running.trial_id)
    seen = theirs.get_trial(ended.trial_id)
    assert (seen.status, seen.score) == ("COMPLETED", 0.75), "read by the other slot's step"
    assert theirs.create_trial(second.slot_id).trial_id == running.trial_id, "still its own"
