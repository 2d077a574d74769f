"""One search from data to exported models. Imports Keras: load it only in a search
process whose ``KERAS_BACKEND`` is already set."""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any

import keras
import keras_tuner

from nas.core.artifacts import SearchArtifacts
from nas.core.settings import Settings
from nas.core.spaces.data_bounds import ModelBounds, model_bounds
from nas.core.specs import SearchSpec
from nas.core.store import Lease, LeaseLostError, SearchStatus, Store
from nas.hypermodels import build_hypermodel
from nas.worker.batching import full_batches, validation_batch_size
from nas.worker.datasets import ImageSet
from nas.worker.export import export_best_models
from nas.worker.hardware import Placement, choose_precision, select_placement
from nas.worker.journal import TrialJournal
from nas.worker.parallel import trial_processes
from nas.worker.search_data import SearchData, load_search_data
from nas.worker.signals import Interruptions
from nas.worker.tuning import SearchCancelled, SearchInterrupted, build_tuner

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
            "callbacks": early_stopping(self.spec),
            "verbose": 0,
        }


def early_stopping(spec: SearchSpec) -> list[keras.callbacks.Callback]:
    """Stops a trial whose objective has not improved for ``tuner.patience`` epochs."""
    if not spec.tuner.patience:
        return []
    return [
        keras.callbacks.EarlyStopping(
            monitor=spec.objective,
            mode="max" if spec.maximize else "min",
            patience=spec.tuner.patience,
        )
    ]


def search_spec(store: Store, lease: Lease) -> SearchSpec:
    """The spec of the leased search."""
    search = store.get_search(lease.search_id)
    if search is None:
        raise LeaseLostError(f"search {lease.search_id} no longer exists")
    return SearchSpec.model_validate(search.spec)


def prepare_search(
    store: Store, settings: Settings, lease: Lease, interruptions: Interruptions
) -> SearchSetup:
    """Load the search's data and build its tuner on this process's devices: the search
    process does, and so does each trial process of a search with several trials in flight."""
    spec = search_spec(store, lease)
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
    tuner = build_tuner(
        spec,
        hypermodel,
        artifacts.tuner_dir,
        journal,
        interruptions,
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
    """Load the data, tune, export the best models and close the search.

    Returns False when SIGTERM interrupted it before the end (and nobody cancelled it):
    the search is left as it is, for the worker to give back to the queue.
    """
    in_flight = min(settings.parallel_trials, search_spec(store, lease).tuner.planned_trials())
    crew = trial_processes(settings, lease, in_flight, interruptions) if in_flight > 1 else None
    with crew or contextlib.nullcontext() as trials:
        setup = prepare_search(store, settings, lease, interruptions)
        _record_run_context(store, lease, setup, in_flight)
        outcome = SearchStatus.SUCCEEDED
        try:
            if trials is not None:
                trials.serve(setup.tuner)
            else:
                setup.tuner.search(**setup.fit_arguments())
        except SearchCancelled:
            outcome = SearchStatus.CANCELLED
        except SearchInterrupted:
            if not store.is_cancel_requested(lease.search_id):
                log.info("interrupted; the search goes back to the queue and resumes later")
                return False
            outcome = SearchStatus.CANCELLED
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
    )
    store.record_models(lease, models)
    if outcome == SearchStatus.SUCCEEDED and not models:
        store.finish_search(lease, SearchStatus.FAILED, error="every trial failed")
    else:
        store.finish_search(lease, outcome)
    return True


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
