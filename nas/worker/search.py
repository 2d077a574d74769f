"""One search from data to exported models. Imports Keras: load it only in a search
process whose ``KERAS_BACKEND`` is already set."""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, replace
from typing import Any

import keras
import keras_tuner

from nas.core.artifacts import SearchArtifacts
from nas.core.settings import Settings
from nas.core.spaces.data_bounds import ModelBounds, model_bounds
from nas.core.specs import SearchSpec
from nas.core.store import (
    EndedBy,
    ExportedModel,
    FinalTraining,
    Lease,
    LeaseLostError,
    SearchRecord,
    SearchStatus,
    Store,
)
from nas.hypermodels import build_hypermodel
from nas.worker.batching import full_batches, validation_batch_size
from nas.worker.budget import FINAL_TRAINING_SHARE, SearchClock
from nas.worker.datasets import ImageSet
from nas.worker.export import best_completed_trials, export_best_models
from nas.worker.final_training import FinalModel, train_to_the_end
from nas.worker.hardware import Placement, choose_precision, select_placement
from nas.worker.journal import TrialJournal
from nas.worker.parallel import trial_processes
from nas.worker.pruning import StopRules
from nas.worker.search_data import SearchData, load_search_data
from nas.worker.signals import Interruptions
from nas.worker.tuning import BudgetSpent, SearchInterrupted, SearchStopped, build_tuner

log = logging.getLogger(__name__)

#: Earlier searches whose best configuration a search tries first (after the defaults).
WARM_START_CONFIGURATIONS = 3


@dataclass(frozen=True)
class SearchSetup:
    """Everything a process needs to run trials of a search: data, placement, tuner."""

    spec: SearchSpec
    placement: Placement
    precision: str
    data: SearchData
    artifacts: SearchArtifacts
    journal: TrialJournal
    tuner: keras_tuner.Tuner
    stop_rules: StopRules
    #: The whole budget's clock (``stop_rules`` run on exploration's share of it).
    clock: SearchClock
    full_batches: bool
    bounds: ModelBounds

    @property
    def images(self) -> ImageSet:
        """The training and validation photos (and the test photos of a ``test_split``)."""
        return self.data.images

    def fit_arguments(self) -> dict[str, Any]:
        """What ``tuner.search`` passes on to ``model.fit``."""
        images, labels = self.images.images, self.images.labels
        validation = self.data.validation
        batch_size = self.spec.tuner.batch_size
        train, validation_batch = self.data.train, batch_size
        if self.full_batches:
            train = full_batches(train, batch_size, self.spec.dataset.seed)
            validation_batch = validation_batch_size(
                len(validation), self.spec.dataset.image_size, batch_size
            )
        return {
            "x": images[train],
            "y": labels[train],
            "validation_data": (images[validation], labels[validation]),
            "epochs": self.spec.tuner.epochs,
            "batch_size": batch_size,
            "validation_batch_size": validation_batch,
            "callbacks": [],
            "verbose": 0,
        }


def leased_search(store: Store, lease: Lease) -> SearchRecord:
    """The leased search as the store has it."""
    search = store.get_search(lease.search_id)
    if search is None:
        raise LeaseLostError(f"search {lease.search_id} no longer exists")
    return search


def search_spec(store: Store, lease: Lease) -> SearchSpec:
    """The spec of the leased search."""
    return SearchSpec.model_validate(leased_search(store, lease).spec)


def search_clock(search: SearchRecord, spec: SearchSpec) -> SearchClock:
    """The clock of the search's budget: from the start of its current run (its first, or
    the first after its latest extension), on what its earlier runs left of the budget."""
    if search.resumed_at is None:
        raise LeaseLostError(f"search {search.id} was never started")
    if spec.budget is None:
        return SearchClock(search.resumed_at, None)
    return SearchClock(search.resumed_at, spec.budget.seconds - search.budget_spent_before_resuming)


def prepare_search(
    store: Store, settings: Settings, lease: Lease, interruptions: Interruptions
) -> SearchSetup:
    """Load the search's data and build its tuner on this process's devices: the search
    process does, and so does each trial process of a search with several trials in flight."""
    search = leased_search(store, lease)
    spec = SearchSpec.model_validate(search.spec)
    placement = select_placement(settings.backend)
    precision = choose_precision(spec.tuner.precision, placement.accelerator)
    keras.mixed_precision.set_global_policy(precision)
    if spec.tuner.seed is not None:
        # Weights, augmentation and shuffling too, not only the oracle's draws.
        keras.utils.set_random_seed(spec.tuner.seed)

    data = load_search_data(spec.dataset, settings)
    artifacts = SearchArtifacts(settings.artifacts_dir, lease.search_id)
    journal = TrialJournal(store, lease, spec.objective)
    bounds = model_bounds(
        spec.space,
        train_images=len(data.train),
        image_size=spec.dataset.image_size,
        limit_max_params=settings.limit_max_params,
        limit_max_flops=settings.limit_max_flops,
    )
    hypermodel = build_hypermodel(
        spec.space,
        spec.dataset.image_size,
        len(data.images.class_names),
        steps_per_epoch=math.ceil(len(data.train) / spec.tuner.batch_size),
        epochs=spec.tuner.epochs,
        max_params=bounds.max_params,
        max_flops=bounds.max_flops,
    )
    clock = search_clock(search, spec)
    # Exploration stops short of the budget when the best architectures train to the end.
    reserve = FINAL_TRAINING_SHARE if spec.final_top_k else 0.0
    stop_rules = StopRules(spec, clock.exploration(reserve), classes=len(data.images.class_names))
    tuner = build_tuner(
        spec,
        hypermodel,
        artifacts.tuner_dir,
        journal,
        interruptions,
        stop_rules,
        tf_strategy=placement.tf_strategy,
        overwrite=False,  # a re-claimed search resumes from the oracle's saved state
        tensorboard_dir=artifacts.tensorboard_dir,
        seeded=warm_start(store, lease, spec, data),
    )
    return SearchSetup(
        spec,
        placement,
        precision,
        data,
        artifacts,
        journal,
        tuner,
        stop_rules,
        clock,
        full_batches=settings.full_batches,
        bounds=bounds,
    )


def warm_start(
    store: Store, lease: Lease, spec: SearchSpec, data: SearchData
) -> list[dict[str, Any]]:
    """The best configurations of the owner's earlier searches of the same photos at the same
    size (none if ``tuner.warm_start`` is off), without the tuners' bookkeeping values."""
    fingerprint = data.images.fingerprint
    if not spec.tuner.warm_start or fingerprint is None:
        return []
    found = store.warm_start_configurations(
        lease.search_id, fingerprint, limit=WARM_START_CONFIGURATIONS
    )
    if found:
        log.info("warm start: %d configuration(s) of earlier searches first", len(found))
    return [
        {name: value for name, value in values.items() if not name.startswith("tuner/")}
        for values in found
    ]


def run_search(
    store: Store, settings: Settings, lease: Lease, interruptions: Interruptions
) -> bool:
    """Load the data, tune, train the best architectures to the end, export the best models
    and close the search.

    Returns False when SIGTERM interrupted it before the end (and nobody cancelled it):
    the search is left as it is, for the worker to give back to the queue.
    """
    in_flight = min(settings.parallel_trials, search_spec(store, lease).tuner.planned_trials())
    crew = trial_processes(settings, lease, in_flight, interruptions) if in_flight > 1 else None
    with crew or contextlib.nullcontext() as trials:
        setup = prepare_search(store, settings, lease, interruptions)
        _record_run_context(store, lease, setup, in_flight)
        try:
            if trials is not None:
                trials.serve(setup.tuner)
            else:
                setup.tuner.search(**setup.fit_arguments())
            outcome: SearchStatus | None = SearchStatus.SUCCEEDED
        except BudgetSpent:
            outcome = SearchStatus.SUCCEEDED  # the exploration clock says so below
        except SearchStopped as stopped:
            outcome = _stopped_outcome(store, lease, stopped)
    finals: list[FinalModel] = []
    if outcome == SearchStatus.SUCCEEDED:
        try:
            finals = _train_to_the_end(store, lease, setup, interruptions)
        except SearchStopped as stopped:
            outcome = _stopped_outcome(store, lease, stopped)
    if outcome is None:
        log.info("interrupted; the search goes back to the queue and resumes later")
        return False
    if outcome == SearchStatus.CANCELLED:
        log.info("cancelled by the user; exporting the best finished trials")

    setup.journal.ensure_held()
    spec = setup.spec
    models = export_best_models(
        setup.tuner,
        top_k=spec.export_top_k,
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


def _stopped_outcome(store: Store, lease: Lease, stopped: SearchStopped) -> SearchStatus | None:
    """CANCELLED for a search the user cancelled; None for one the worker's SIGTERM stopped,
    which goes back to the queue."""
    if isinstance(stopped, SearchInterrupted) and not store.is_cancel_requested(lease.search_id):
        return None
    return SearchStatus.CANCELLED


def _train_to_the_end(
    store: Store, lease: Lease, setup: SearchSetup, interruptions: Interruptions
) -> list[FinalModel]:
    """The final trainings of the search's best ``final_top_k`` architectures."""
    spec = setup.spec
    best = best_completed_trials(setup.tuner, min(spec.final_top_k, spec.export_top_k))
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


def _record_run_context(store: Store, lease: Lease, setup: SearchSetup, in_flight: int) -> None:
    placement, data = setup.placement, setup.data
    store.record_run_context(
        lease,
        accelerator=placement.accelerator.as_dict(),
        precision=setup.precision,
        dataset_info=data.info() | {"model_bounds": setup.bounds.as_dict()},
    )
    log.info(
        "training on %s (%s, %d replicas) in %s, %d trial(s) at a time: "
        "%d train / %d validation / %d test images",
        placement.accelerator.platform,
        placement.accelerator.strategy,
        placement.accelerator.replicas,
        setup.precision,
        in_flight,
        len(data.train),
        len(data.validation),
        0 if data.test is None else len(data.test.labels),
    )


def run_trials(
    store: Store, settings: Settings, lease: Lease, interruptions: Interruptions
) -> None:
    """The body of one trial process: ask the search's oracle for trials until it has none."""
    setup = prepare_search(store, settings, lease, interruptions)
    setup.tuner.search(**setup.fit_arguments())
