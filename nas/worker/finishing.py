"""A search's finishing step, once its oracle hands out no more trials (or it was cancelled):
train the best architectures to the end, export and test the best models, close the search.
Imports Keras: load it only in a process whose ``KERAS_BACKEND`` is already set."""

from __future__ import annotations

import logging
from dataclasses import replace

import keras_tuner

from nas.core.settings import Settings
from nas.core.store import (
    DataStepState,
    EndedBy,
    ExportedModel,
    FinalTraining,
    Lease,
    SearchStatus,
    Store,
)
from nas.worker.export import chosen_trials, export_best_models
from nas.worker.final_training import FinalModel, train_to_the_end
from nas.worker.keras_tuner_adapter import load_saved_state
from nas.worker.search import SearchSetup, prepare_search
from nas.worker.signals import Interruptions
from nas.worker.tuning import SearchInterrupted, SearchStopped

log = logging.getLogger(__name__)


def run_finishing(
    store: Store, settings: Settings, lease: Lease, interruptions: Interruptions
) -> bool:
    """Train the best architectures to the end, export the best models and close the search.

    Returns False when SIGTERM interrupted it before the end (and nobody cancelled it): the
    step is left for the worker to give back, and another worker takes it.
    """
    if not _data_ready(store, lease) and store.is_cancel_requested(lease.search_id):
        # Cancelled before any slot had the search's data: no trial ran, nothing to export.
        store.finish_search(lease, SearchStatus.CANCELLED)
        return True
    setup = prepare_search(
        store,
        settings,
        lease,
        interruptions,
        journal=None,
        ensure_held=lambda: store.check_lease(lease),
    )
    # No slot is left to change the oracle's state: it is read once, without the lock.
    load_saved_state(setup.tuner.oracle)
    cancelled = store.is_cancel_requested(lease.search_id)
    outcome: SearchStatus | None = SearchStatus.CANCELLED if cancelled else SearchStatus.SUCCEEDED
    spec = setup.spec
    chosen = chosen_trials(
        setup.tuner.oracle,
        spec.export_top_k,
        objective=spec.objective,
        validation_images=len(setup.data.validation),
        margin=spec.defaults_margin,
    )
    finals: list[FinalModel] = []
    if outcome == SearchStatus.SUCCEEDED:
        try:
            finals = _train_to_the_end(
                store, lease, setup, chosen[: spec.final_top_k], interruptions
            )
        except SearchStopped as stopped:
            outcome = _stopped_outcome(store, lease, stopped)
    if outcome is None:
        log.info("interrupted; another worker finishes the search")
        return False
    if outcome == SearchStatus.CANCELLED:
        log.info("cancelled by the user; exporting the best finished trials")

    setup.ensure_held()
    models = export_best_models(
        setup.tuner,
        chosen,
        artifacts=setup.artifacts,
        class_names=setup.images.class_names,
        image_size=spec.dataset.image_size,
        test=setup.data.test,
        batch_size=spec.tuner.batch_size,
        trained_to_the_end={
            final.training.trial_id: final.model for final in finals if final.model is not None
        },
    )
    store.record_models(lease, models)
    if finals:
        store.record_final_training(lease, _with_test_accuracy(finals, models))
    if outcome == SearchStatus.SUCCEEDED and not models:
        store.finish_search(lease, SearchStatus.FAILED, error="every trial failed")
    elif outcome == SearchStatus.SUCCEEDED:
        ended_by = EndedBy.BUDGET if setup.stop_rules.clock.expired() else EndedBy.MAX_TRIALS
        store.finish_search(lease, outcome, ended_by=ended_by)
    else:
        store.finish_search(lease, outcome)
    return True


def _data_ready(store: Store, lease: Lease) -> bool:
    step = store.get_data_step(lease.search_id)
    return step is not None and step.state == DataStepState.READY


def _stopped_outcome(store: Store, lease: Lease, stopped: SearchStopped) -> SearchStatus | None:
    """CANCELLED for a search the user cancelled; None for one the worker's SIGTERM stopped."""
    if isinstance(stopped, SearchInterrupted) and not store.is_cancel_requested(lease.search_id):
        return None
    return SearchStatus.CANCELLED


def _train_to_the_end(
    store: Store,
    lease: Lease,
    setup: SearchSetup,
    best: list[keras_tuner.engine.trial.Trial],
    interruptions: Interruptions,
) -> list[FinalModel]:
    """The final trainings of the architectures of ``best``, first first."""
    if not best:
        return []
    return train_to_the_end(
        setup,
        best,
        {trial.trial_id: trial for trial in store.list_trials(lease.search_id)},
        # With a time budget, what its whole clock has left (exploration stopped short of it,
        # leaving FINAL_TRAINING_SHARE); without one, None trains each architecture for the
        # epochs its trial trained.
        remaining_seconds=lambda: None if setup.clock.seconds is None else setup.clock.remaining(),
        interruptions=interruptions,
        cancel_requested=lambda: store.is_cancel_requested(lease.search_id),
    )


def _with_test_accuracy(
    finals: list[FinalModel], models: list[ExportedModel]
) -> list[FinalTraining]:
    """The final trainings, each with the test accuracy of its exported model."""
    accuracy = {model.trial_id: model.test_accuracy for model in models}
    return [
        replace(final.training, test_accuracy=accuracy.get(final.training.trial_id))
        if final.model is not None
        else final.training
        for final in finals
    ]
