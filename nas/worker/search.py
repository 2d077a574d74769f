"""What a slot or a search's finishing step builds first: the search's data and its tuner
on this process's devices. Imports Keras: load it only in a process whose ``KERAS_BACKEND``
is already set."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import keras_tuner

from nas.core.artifacts import SearchArtifacts
from nas.core.settings import Settings
from nas.core.spaces.data_bounds import ModelBounds, model_bounds
from nas.core.specs import SearchSpec
from nas.core.store import Lease, LeaseLostError, SearchRecord, SlotLease, Store, TrialStatus
from nas.hypermodels import build_hypermodel
from nas.worker.batching import full_batches, validation_batch_size
from nas.worker.budget import (
    FINAL_EPOCHS_PER_TRIAL_EPOCHS,
    BudgetClock,
    ExplorationClock,
    SearchClock,
)
from nas.worker.data_step import obtain_search_data, read_search_data
from nas.worker.datasets import ImageSet
from nas.worker.final_training import seconds_per_epoch
from nas.worker.hardware import Placement, choose_precision, select_placement
from nas.worker.journal import TrialJournal
from nas.worker.pruning import StopRules
from nas.worker.search_data import SearchData
from nas.worker.signals import Interruptions
from nas.worker.tuning import build_tuner

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
    #: Raises LeaseLostError once the lease of the slot or finishing step is gone.
    ensure_held: Callable[[], None]
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


def search_clock(search: SearchRecord, spec: SearchSpec) -> SearchClock:
    """The clock of the search's budget: from the start of its current run (its first, or
    the first after its latest extension), on what its earlier runs left of the budget."""
    if search.resumed_at is None:
        raise LeaseLostError(f"search {search.id} was never started")
    if spec.budget is None:
        return SearchClock(search.resumed_at, None)
    return SearchClock(search.resumed_at, spec.budget.seconds - search.budget_spent_before_resuming)


def exploration_clock(
    store: Store,
    search_id: str,
    spec: SearchSpec,
    clock: SearchClock,
    *,
    trial_images: int,
    final_images: int,
) -> BudgetClock:
    """The clock trials run on: the whole budget's, or, when the best architectures train to
    the end, one that stops short of it to leave them their share, sized by the epoch time of
    the search's first trial (the space's defaults) on ``trial_images``, scaled to the final
    trainings' ``final_images``."""
    if not spec.final_top_k:
        return clock

    def first_trial_epoch_seconds() -> float | None:
        trials = store.list_trials(search_id)
        if not trials:
            return None
        first = trials[0]
        # A running trial's pace needs epochs past its first, which also compiled the step.
        if first.status == TrialStatus.RUNNING and len(first.history) < 3:
            return None
        return seconds_per_epoch(first, trial_images, final_images)

    return ExplorationClock(
        clock,
        final_epochs_needed=FINAL_EPOCHS_PER_TRIAL_EPOCHS * spec.tuner.epochs * spec.final_top_k,
        exported_models=spec.export_top_k,
        epoch_seconds=first_trial_epoch_seconds,
    )


def prepare_search(
    store: Store,
    settings: Settings,
    lease: SlotLease | Lease,
    interruptions: Interruptions,
    *,
    journal: TrialJournal | None,
    ensure_held: Callable[[], None],
) -> SearchSetup:
    """Get the search's data (see :func:`obtain_search_data`) and build its tuner on this
    process's devices: each slot does (journaling its trials into ``journal``), and so does
    the finishing step (no journal); ``lease`` is theirs. ``ensure_held`` raises
    LeaseLostError once the caller's lease is gone.

    Raises:
        SearchInterrupted: SIGTERM came while a slot prepared the data or waited for it.
    """
    search_id = lease.search_id
    search = store.get_search(search_id)
    if search is None:
        raise LeaseLostError(f"search {search_id} no longer exists")
    spec = SearchSpec.model_validate(search.spec)
    placement = select_placement(settings.backend)
    precision = choose_precision(spec.tuner.precision, placement.accelerator)
    keras.mixed_precision.set_global_policy(precision)
    if spec.tuner.seed is not None:
        # Weights, augmentation and shuffling too, not only the oracle's draws.
        keras.utils.set_random_seed(spec.tuner.seed)

    # A slot prepares the data if no other has; the finishing step only reads it.
    data = (
        obtain_search_data(store, settings, lease, spec.dataset, interruptions)
        if isinstance(lease, SlotLease)
        else read_search_data(store, settings, search_id)
    )
    artifacts = SearchArtifacts(settings.artifacts_dir, search_id)
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
    exploration = exploration_clock(
        store,
        search_id,
        spec,
        clock,
        trial_images=len(data.train),
        final_images=len(data.train) + len(data.validation),
    )
    stop_rules = StopRules(spec, exploration, classes=len(data.images.class_names))
    tuner = build_tuner(
        spec,
        hypermodel,
        artifacts.tuner_dir,
        journal,
        interruptions,
        stop_rules,
        tf_strategy=placement.tf_strategy,
        tensorboard_dir=artifacts.tensorboard_dir,
        seeded=warm_start(store, search_id, spec, data),
    )
    return SearchSetup(
        spec,
        placement,
        precision,
        data,
        artifacts,
        ensure_held,
        tuner,
        stop_rules,
        clock,
        full_batches=settings.full_batches,
        bounds=bounds,
    )


def warm_start(
    store: Store, search_id: str, spec: SearchSpec, data: SearchData
) -> list[dict[str, Any]]:
    """The best configurations of the owner's earlier searches of the same photos at the same
    size (none if ``tuner.warm_start`` is off), without the tuners' bookkeeping values."""
    fingerprint = data.images.fingerprint
    if not spec.tuner.warm_start or fingerprint is None:
        return []
    found = store.warm_start_configurations(search_id, fingerprint, limit=WARM_START_CONFIGURATIONS)
    if found:
        log.info("warm start: %d configuration(s) of earlier searches first", len(found))
    return [
        {name: value for name, value in values.items() if not name.startswith("tuner/")}
        for values in found
    ]
