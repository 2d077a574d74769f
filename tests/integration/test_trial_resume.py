"""A trial resumed from its backup, through this service's real KerasTuner tuner, the shared
oracle and a real store: a slot stopped after two epochs (as by SIGTERM, which leaves the
backup as a kill does), and the slot that takes the trial over goes on from its third epoch,
with the journal, the trial's best-epoch checkpoint and early stopping where they were."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import numpy as np
import pytest

from nas.core.specs import SearchSpec
from nas.core.store import SlotLease, Store, TrialStatus
from nas.hypermodels.capped import CappedHyperModel
from nas.worker.budget import SearchClock
from nas.worker.journal import TrialJournal
from nas.worker.pruning import StopRules
from nas.worker.shared_oracle import SharedOracle
from nas.worker.signals import Interruptions
from nas.worker.tuning import BACKUP_FOLDER, SearchInterrupted, build_tuner
from tests.support.leases import join

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

#: Validation labels: 7 of class 0 in 10, so a model that always says 0 scores 0.7.
VALIDATION_LABELS = np.array([0] * 7 + [1] * 3)
EPOCHS = 8
PATIENCE = 3


class AlwaysClassZero(CappedHyperModel):
    """A model that always predicts class 0 whatever it is shown: its val_accuracy is 0.7 at
    every epoch, so early stopping ends it after ``PATIENCE`` epochs past its first."""

    def __init__(self) -> None:
        super().__init__("always-class-zero", max_params=None)

    def declare(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        return {"bias": hp.Fixed("bias", 1.0)}

    def count_params(self, chosen: dict[str, Any]) -> int:
        return 10

    def count_flops(self, chosen: dict[str, Any]) -> int:
        return 10

    def build_model(self, hp: keras_tuner.HyperParameters, chosen: dict[str, Any]) -> keras.Model:
        model = keras.Sequential(
            [
                keras.Input((4,)),
                keras.layers.Dense(
                    2,
                    activation="softmax",
                    kernel_initializer="zeros",
                    bias_initializer=keras.initializers.Constant([chosen["bias"], 0.0]),
                    trainable=False,
                ),
            ]
        )
        model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model


class StopAfter(keras.callbacks.Callback):
    """Asks the slot to stop (as SIGTERM does) at the end of epoch ``epochs`` - 1: the next
    batch raises SearchInterrupted, after the journal and the backup saw that epoch."""

    def __init__(self, interruptions: Interruptions, epochs: int) -> None:
        super().__init__()
        self.interruptions = interruptions
        self.epochs = epochs

    def __deepcopy__(self, memo: dict[int, Any]) -> StopAfter:
        return self  # KerasTuner deep-copies a trial's callbacks: the flag must stay shared

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch + 1 == self.epochs:
            self.interruptions.requested = True


def queued_search(store: Store, **tuner: Any) -> tuple[SearchSpec, str]:
    """A random search of one trial, queued."""
    spec = SearchSpec.model_validate(
        {"dataset": {"path": "/data"}, "tuner": {"algorithm": "random", "max_trials": 1, **tuner}}
    )
    submitted = store.create_search(spec.model_dump(mode="json"), trials_planned=1, owner="a")
    return spec, submitted.search.id


def run_slot(
    store: Store,
    spec: SearchSpec,
    project_dir: Path,
    lease: SlotLease,
    *,
    stop_after: int | None = None,
) -> keras_tuner.Tuner:
    """One slot's tuner on the search's shared oracle, run until the search has no trial
    left for it, as ``nas.worker.slot.run_slot`` runs it; with ``stop_after``, the slot is
    asked to stop after that many epochs (SearchInterrupted)."""
    interruptions = Interruptions()
    stop = [] if stop_after is None else [StopAfter(interruptions, stop_after)]
    tuner = build_tuner(
        spec,
        AlwaysClassZero(),
        project_dir,
        TrialJournal(store, lease, spec.objective),
        interruptions,
        StopRules(spec, SearchClock(datetime.now(UTC), None), classes=2),
        tf_strategy=None,
        tensorboard_dir=None,
    )
    tuner.oracle = SharedOracle(tuner.oracle, store, lease)
    tuner.tuner_id = lease.slot_id
    tuner.search(
        np.zeros((16, 4), "float32"),
        np.array([0, 1] * 8),
        validation_data=(np.zeros((10, 4), "float32"), VALIDATION_LABELS),
        epochs=spec.tuner.epochs,
        batch_size=4,
        callbacks=stop,
        verbose=0,
    )
    return tuner


def test_a_trial_taken_over_goes_on_from_its_backup(store: Store, tmp_path: Path) -> None:
    spec, search_id = queued_search(store, epochs=EPOCHS, patience=PATIENCE, pruning=False)
    project_dir = tmp_path / "tuner"
    first = join(store, "first", lease_seconds=600)

    with pytest.raises(SearchInterrupted):
        run_slot(store, spec, project_dir, first, stop_after=2)

    (stopped,) = store.list_trials(search_id)
    assert (stopped.status, stopped.epochs) == (TrialStatus.RUNNING, 2)
    checkpoint = project_dir / "trial_0" / "checkpoint.weights.h5"
    saved = checkpoint.stat().st_mtime_ns
    assert (project_dir / "trial_0" / BACKUP_FOLDER).is_dir(), "the interrupted fit's backup"
    store.leave_slot(first, died=False, max_attempts=3)
    second = join(store, "second", lease_seconds=600)

    tuner = run_slot(store, spec, project_dir, second)

    (trial,) = store.list_trials(search_id)
    assert (trial.status, trial.worker_id) == (TrialStatus.COMPLETED, "second")
    assert trial.resumed_at_epochs == (2,)
    assert trial.history[:2] == stopped.history[:2], "epochs 0 and 1 are the first run's"
    # Early stopping went on from where the first run left it: it stops at epoch 3, as one
    # uninterrupted run does (from scratch, its patience would have lasted to epoch 5).
    assert trial.epochs == 4
    assert trial.stop_reason == f"patience: no better val_accuracy for {PATIENCE} epochs"
    assert trial.seconds >= stopped.seconds
    # No resumed epoch beat the checkpoint's 0.7: it was not saved over.
    assert checkpoint.stat().st_mtime_ns == saved
    assert tuner.oracle.get_trial("0").score == trial.score == pytest.approx(0.7)
    assert not (project_dir / "trial_0" / BACKUP_FOLDER).exists(), "gone once the fit ended"
    # Backed up once every other callback saw the epoch, KerasTuner's checkpoint included.
    assert isinstance(tuner.fit_callbacks[-1], keras.callbacks.BackupAndRestore)


def cut_in_half(path: Path) -> None:
    """As a kill leaves a file it was writing."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("backup", ["removed", "cut"])
def test_a_rerun_without_a_backup_it_can_read_trains_from_scratch(
    store: Store, tmp_path: Path, backup: str
) -> None:
    spec, search_id = queued_search(store, epochs=3, patience=0)
    project_dir = tmp_path / "tuner"
    first = join(store, "first", lease_seconds=600)
    with pytest.raises(SearchInterrupted):
        run_slot(store, spec, project_dir, first, stop_after=1)
    (stopped,) = store.list_trials(search_id)
    store.leave_slot(first, died=False, max_attempts=3)
    folder = project_dir / "trial_0" / BACKUP_FOLDER
    if backup == "removed":  # it died between its fit's end (which removes it) and the trial's
        shutil.rmtree(folder)
    else:  # killed while it wrote its first backup, with none before it
        cut_in_half(folder / "latest.weights.h5")

    run_slot(store, spec, project_dir, join(store, "second", lease_seconds=600))

    (trial,) = store.list_trials(search_id)
    assert (trial.status, trial.epochs, trial.resumed_at_epochs) == (TrialStatus.COMPLETED, 3, ())
    assert trial.history[0] != stopped.history[0], "epoch 0 trained again"


@pytest.mark.parametrize("cut", ["latest.weights.h5", "training_metadata.json"])
def test_a_backup_cut_by_a_kill_mid_write_leaves_the_one_before(
    store: Store, tmp_path: Path, cut: str
) -> None:
    spec, search_id = queued_search(store, epochs=4, patience=0, pruning=False)
    project_dir = tmp_path / "tuner"
    first = join(store, "first", lease_seconds=600)
    with pytest.raises(SearchInterrupted):
        run_slot(store, spec, project_dir, first, stop_after=2)
    (stopped,) = store.list_trials(search_id)
    store.leave_slot(first, died=False, max_attempts=3)
    # Killed while it wrote the backup of epoch 1 over that of epoch 0.
    cut_in_half(project_dir / "trial_0" / BACKUP_FOLDER / cut)

    run_slot(store, spec, project_dir, join(store, "second", lease_seconds=600))

    (trial,) = store.list_trials(search_id)
    assert (trial.status, trial.epochs, trial.resumed_at_epochs) == (TrialStatus.COMPLETED, 4, (1,))
    assert trial.history[0] == stopped.history[0]
    assert trial.history[1] != stopped.history[1], "epoch 1 trained again"


def test_a_best_epoch_checkpoint_cut_by_a_kill_is_saved_again(store: Store, tmp_path: Path) -> None:
    spec, search_id = queued_search(store, epochs=3, patience=0, pruning=False)
    project_dir = tmp_path / "tuner"
    first = join(store, "first", lease_seconds=600)
    with pytest.raises(SearchInterrupted):
        run_slot(store, spec, project_dir, first, stop_after=2)
    store.leave_slot(first, died=False, max_attempts=3)
    cut_in_half(project_dir / "trial_0" / "checkpoint.weights.h5")

    tuner = run_slot(store, spec, project_dir, join(store, "second", lease_seconds=600))

    (trial,) = store.list_trials(search_id)
    assert (trial.status, trial.resumed_at_epochs) == (TrialStatus.COMPLETED, (2,))
    # Its last epoch was no better than its first two: saved anyway, over the cut file.
    assert tuner.load_model(tuner.oracle.get_trial("0")).count_params() == 10


def test_the_journal_goes_on_from_the_epochs_the_store_kept(store: Store) -> None:
    _spec, search_id = queued_search(store, epochs=6)
    first = TrialJournal(store, join(store, "first", lease_seconds=0.0), "val_accuracy")
    first.trial_started("0", {})
    for epoch, value in enumerate([0.5, 0.9, 0.6]):
        first.epoch_ended("0", epoch, {"val_accuracy": value}, params=10)
    time.sleep(0.01)
    store.reap_expired(max_attempts=3)  # its worker died in epoch 3, its backup at epoch 2
    (lost,) = store.list_trials(search_id)
    journal = TrialJournal(store, join(store, "second", lease_seconds=600), "val_accuracy")
    journal.trial_started("0", {})

    kept = journal.training_begins("0", 2)

    assert [epoch["val_accuracy"] for epoch in kept.history] == [0.5, 0.9]
    assert journal.kept_epochs("0") == kept.history and kept.score == 0.9
    journal.epoch_ended("0", 2, {"val_accuracy": 0.7}, params=10)
    journal.trial_ended("0", completed=True, error=None)
    (trial,) = store.list_trials(search_id)
    assert trial.score == 0.9, "the best epoch is still the first run's"
    assert trial.seconds >= lost.seconds, "its seconds go on from the first run's"
    assert [epoch["val_accuracy"] for epoch in trial.history] == [0.5, 0.9, 0.7]
    journal.trial_started("1", {})
    assert journal.training_begins("1", 0).history == () and journal.kept_epochs("1") == ()
