"""Large finished searches written straight through the storage layer, the way a worker
records them, for tests and benchmarks of what reads many trials (the dashboard)."""

from __future__ import annotations

import math
import random

from nas.core.specs import SearchSpec
from nas.core.store import SearchStatus, Store, TrialStatus
from tests.support.leases import finish_trials, join


def seed_finished_search(
    store: Store, *, owner: str, dataset_path: str, trials: int, epochs: int, seed: int = 0
) -> str:
    """A succeeded search of ``owner`` with ``trials`` completed trials of ``epochs`` epochs
    each (learning curves that rise at random rates), without exported models; its id."""
    spec = SearchSpec.model_validate(
        {"dataset": {"path": dataset_path, "image_size": 32}, "tuner": {"max_trials": trials}}
    )
    search_id = store.create_search(
        spec.model_dump(mode="json"), trials_planned=trials, owner=owner
    ).search.id
    lease = join(store, f"seeder-{search_id[:8]}", lease_seconds=600)
    assert lease.search_id == search_id, "another search was queued"
    rng = random.Random(seed)
    for index in range(trials):
        trial_id = f"{index:04d}"
        blocks = rng.randint(2, 6)
        hyperparameters = {
            "conv_blocks": blocks,
            "head": rng.choice(["flatten_dense", "gap", "gap_dense"]),
            "learning_rate": rng.choice([1e-3, 3e-3, 1e-2, 3e-4]),
            **{f"filters_{block}": rng.choice([16, 32, 64, 128]) for block in range(blocks)},
            **{f"one_by_one_{block}": rng.choice([False, True]) for block in range(blocks)},
        }
        if hyperparameters["head"] != "gap":
            hyperparameters["dense_units"] = rng.choice([64, 128, 256])
        params = rng.randint(5_000, 2_000_000)
        ceiling, rate = rng.uniform(0.3, 0.9), rng.uniform(0.2, 1.0)
        store.start_trial(lease, trial_id, hyperparameters)
        for epoch in range(epochs):
            accuracy = ceiling * (1 - math.exp(-rate * (epoch + 1)))
            metrics = {
                "accuracy": accuracy + 0.05,
                "loss": 1.6 - accuracy,
                "val_accuracy": accuracy,
                "val_loss": 1.7 - accuracy,
            }
            store.record_epoch(
                lease,
                trial_id,
                epoch=epoch,
                metrics=metrics,
                score=accuracy,
                params=params,
                seconds=epoch + 1.0,
            )
        store.finish_trial(
            lease, trial_id, status=TrialStatus.COMPLETED, score=accuracy, seconds=float(epochs)
        )
    store.finish_search(finish_trials(store, lease, lease_seconds=600), SearchStatus.SUCCEEDED)
    return search_id
