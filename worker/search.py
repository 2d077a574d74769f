"""One search from data to exported models. Imports Keras: load it only in a search
process whose ``KERAS_BACKEND`` is already set."""

from __future__ import annotations

import logging
from pathlib import Path

import keras

from search_spaces import build_hypermodel
from service.artifacts import SearchArtifacts
from service.settings import Settings
from service.specs import SearchSpec
from service.store import Lease, LeaseLostError, SearchStatus, Store
from worker.datasets import load_images, scan_folder, stratified_split
from worker.export import export_best_models
from worker.hardware import choose_precision, select_placement
from worker.journal import TrialJournal
from worker.signals import Interruptions
from worker.tuning import LeaseLost, SearchCancelled, SearchInterrupted, build_tuner

log = logging.getLogger(__name__)


def run_search(
    store: Store, settings: Settings, lease: Lease, interruptions: Interruptions
) -> bool:
    """Load the data, tune, export the best models and close the search.

    Returns False when SIGTERM interrupted it before the end (and nobody cancelled it):
    the search is left as it is, for the worker to give back to the queue.
    """
    search = store.get_search(lease.search_id)
    assert search is not None, f"search {lease.search_id} vanished"
    spec = SearchSpec.model_validate(search.spec)

    placement = select_placement(settings.backend)
    precision = choose_precision(spec.tuner.precision, placement.accelerator)
    keras.mixed_precision.set_global_policy(precision)

    scan = scan_folder(Path(spec.dataset.path), spec.dataset.max_images_per_class)
    images = load_images(scan, spec.dataset.image_size, settings.cache_dir)
    train, validation = stratified_split(
        images.labels, spec.dataset.validation_split, spec.dataset.seed
    )
    store.record_run_context(
        lease,
        accelerator=placement.accelerator.as_dict(),
        precision=precision,
        dataset_info={
            "class_names": list(images.class_names),
            "images": len(images.labels),
            "train_images": len(train),
            "validation_images": len(validation),
            "skipped_images": len(images.skipped),
            "skipped_files": list(images.skipped[:20]),
            "from_cache": images.from_cache,
        },
    )
    log.info(
        "training on %s (%s, %d replicas) in %s: %d train / %d validation images",
        placement.accelerator.platform,
        placement.accelerator.strategy,
        placement.accelerator.replicas,
        precision,
        len(train),
        len(validation),
    )

    artifacts = SearchArtifacts(settings.artifacts_dir, lease.search_id)
    journal = TrialJournal(store, lease, spec.objective)
    hypermodel = build_hypermodel(spec.space, spec.dataset.image_size, len(images.class_names))
    tuner = build_tuner(
        spec,
        hypermodel,
        artifacts.tuner_dir,
        journal,
        interruptions,
        tf_strategy=placement.tf_strategy,
        overwrite=False,  # a re-claimed search resumes from the oracle's saved state
    )
    outcome = SearchStatus.SUCCEEDED
    try:
        tuner.search(
            images.images[train],
            images.labels[train],
            validation_data=(images.images[validation], images.labels[validation]),
            epochs=spec.tuner.epochs,
            batch_size=spec.tuner.batch_size,
            verbose=0,
        )
    except SearchCancelled:
        outcome = SearchStatus.CANCELLED
    except LeaseLost as lost:
        raise LeaseLostError(str(lost)) from lost
    except SearchInterrupted:
        if not store.is_cancel_requested(lease.search_id):
            log.info("interrupted; the search goes back to the queue and resumes later")
            return False
        outcome = SearchStatus.CANCELLED
    if outcome == SearchStatus.CANCELLED:
        log.info("cancelled by the user; exporting the best finished trials")

    journal.ensure_held()
    models = export_best_models(
        tuner,
        top_k=spec.export_top_k,
        artifacts=artifacts,
        class_names=images.class_names,
        image_size=spec.dataset.image_size,
    )
    store.record_models(lease, models)
    if outcome == SearchStatus.SUCCEEDED and not models:
        store.finish_search(lease, SearchStatus.FAILED, error="every trial failed")
    else:
        store.finish_search(lease, outcome)
    return True
