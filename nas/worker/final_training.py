"""The best architectures of a finished search trained again from scratch, on its training and
validation photos together, for as many epochs as the caller gives them, with their
learning-rate schedules sized to those epochs. Their models are exported in the trials' place.

Imports Keras: load it only in a process whose ``KERAS_BACKEND`` is already set.
"""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import keras
import keras_tuner
import numpy as np

from nas.core.errors import LeaseLostError
from nas.core.store import FinalTraining, TrialRecord
from nas.hypermodels import build_hypermodel
from nas.worker.batching import full_batches
from nas.worker.budget import export_reserve
from nas.worker.oracles import EPOCHS
from nas.worker.signals import Interruptions
from nas.worker.supervision import CANCEL_POLL_SECONDS
from nas.worker.tuning import (
    EPOCH_SECONDS,
    TRAIN_SECONDS,
    SearchCancelled,
    SearchInterrupted,
    SearchStopped,
)

if TYPE_CHECKING:
    from nas.worker.search import SearchSetup

log = logging.getLogger(__name__)

#: The prefix of the values a tuner adds to a trial's hyperparameters for its own schedule.
TUNER_VALUES = "tuner/"


@dataclass(frozen=True)
class FinalModel:
    """The outcome of one final training: its record, and its model unless it failed."""

    training: FinalTraining
    model: keras.Model | None


def seconds_per_epoch(trial: TrialRecord, trial_images: int, final_images: int) -> float | None:
    """The mean time of the trial's training passes past its first (which also compiled the
    training step), scaled from the ``trial_images`` it trained on to the ``final_images`` of a
    final training (an epoch's time grows with its photos); None when its history timed no
    epoch. The mean, not the median: a training's length is the sum of its epochs, and on a
    shared CPU their times spread wide (6 to 10 s, the same model, one run).

    A final training validates on nothing: the trial's validation is left out where its
    history timed the training pass alone (older histories timed whole epochs)."""
    timed = [
        epoch.get(TRAIN_SECONDS, epoch.get(EPOCH_SECONDS))
        for epoch in trial.history
        if TRAIN_SECONDS in epoch or EPOCH_SECONDS in epoch
    ]
    if not timed or trial_images <= 0:
        return None
    past_the_first = timed[1:] or timed
    return statistics.fmean(past_the_first) * final_images / trial_images


def final_epochs(
    trial: TrialRecord, *, remaining_seconds: float | None, epoch_seconds: float | None
) -> int:
    """How many epochs the trial's architecture trains to the end.

    Without a budget (``remaining_seconds`` None), the epochs the trial trained; with one,
    as many epochs of ``epoch_seconds`` as fit in ``remaining_seconds``, which is 0 when not
    even one does.
    """
    # A promoted trial's history holds only the epochs of its last round.
    trained = int(trial.hyperparameters.get(EPOCHS) or trial.epochs)
    if remaining_seconds is None or not epoch_seconds:
        return max(trained, 1)
    return max(int(remaining_seconds // epoch_seconds), 0)


@dataclass(frozen=True)
class FinalPlan:
    """How long one final training may run: its epochs, and the seconds of its share of the
    budget (None without a budget), after which it stops at an epoch's end."""

    epochs: int
    seconds: float | None
    epoch_seconds: float | None


def plan_final_training(
    trial: TrialRecord,
    *,
    remaining_seconds: float | None,
    trainings_left: int,
    trial_images: int,
    final_images: int,
    exported_models: int,
) -> FinalPlan:
    """The plan of the next of ``trainings_left`` final trainings: what the budget has left,
    less the export's reserve for ``exported_models``, shared evenly among them."""
    epoch_seconds = seconds_per_epoch(trial, trial_images, final_images)
    share = None
    if remaining_seconds is not None:
        reserve = export_reserve(epoch_seconds, exported_models)
        share = max(0.0, remaining_seconds - reserve) / trainings_left
    epochs = final_epochs(trial, remaining_seconds=share, epoch_seconds=epoch_seconds)
    return FinalPlan(epochs, share, epoch_seconds)


def next_epoch_seconds(epochs_done: int, last_epoch_seconds: float, planned: float | None) -> float:
    """How long a final training's next epoch should take: as long as its last one, except
    after its first, which also compiled the training step: then no longer than the
    ``planned`` epoch time its trial foretold (None: not known)."""
    if epochs_done == 1 and planned is not None:
        return min(last_epoch_seconds, planned)
    return last_epoch_seconds


def stops_at_deadline(now: float, deadline: float | None, next_epoch: float) -> bool:
    """Whether a final training stops after the epoch that ended at ``now``: the next one,
    lasting ``next_epoch`` seconds, would end past ``deadline`` (its learning rate is then near
    the end of its schedule's decay: a late stop costs little)."""
    return deadline is not None and now + next_epoch > deadline


def train_to_the_end(
    setup: SearchSetup,
    best: Sequence[keras_tuner.engine.trial.Trial],
    records: Mapping[str, TrialRecord],
    *,
    remaining_seconds: Callable[[], float | None],
    interruptions: Interruptions,
    cancel_requested: Callable[[], bool],
) -> list[FinalModel]:
    """Train each of the ``best`` trials' architectures again, best first.

    ``remaining_seconds`` is read before each training (None: no budget); what is left is
    shared evenly among the trainings still to run (see :func:`plan_final_training`), an
    architecture's epochs are as many as fit in its share, and it stops at an epoch's end
    before overrunning the share when its epochs turn out slower than its trial's. A training
    that fails, or that the budget leaves no time for, is recorded with the reason and yields
    no model.

    Raises:
        SearchCancelled: the user cancelled the search meanwhile.
        SearchInterrupted: the worker is stopping; the search resumes later.
        LeaseLostError: another worker took the search over.
    """
    data = setup.data
    trial_images, final_images = len(data.train), len(data.train) + len(data.validation)
    finals = []
    for rank, trial in enumerate(best, start=1):
        if cancel_requested():
            raise SearchCancelled
        record = records.get(trial.trial_id)
        if record is None:
            reason = "the store has no record of the trial's epochs"
            finals.append(_failed(trial.trial_id, rank, 0, final_images, reason))
            continue
        plan = plan_final_training(
            record,
            remaining_seconds=remaining_seconds(),
            trainings_left=len(best) - rank + 1,
            trial_images=trial_images,
            final_images=final_images,
            exported_models=setup.spec.export_top_k,
        )
        deadline = None if plan.seconds is None else time.monotonic() + plan.seconds
        finals.append(
            _train_one(
                setup,
                trial,
                rank,
                plan.epochs,
                watch=FinalTrainingWatch(
                    setup, interruptions, cancel_requested, deadline, plan.epoch_seconds
                ),
                no_time=f"the budget left {plan.seconds or 0:.0f} s, under one epoch "
                f"({plan.epoch_seconds or 0:.0f} s) and the export's reserve",
            )
        )
    return finals


def train_final_model(
    setup: SearchSetup,
    hyperparameters: keras_tuner.HyperParameters,
    epochs: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> tuple[keras.Model, int]:
    """A new model of ``hyperparameters`` trained from scratch on the search's training and
    validation photos for ``epochs``, its learning-rate schedule spanning them; the model and
    the number of photos it trained on."""
    spec, data = setup.spec, setup.data
    indices = np.sort(np.concatenate([data.train, data.validation]))
    batch_size = spec.tuner.batch_size
    if spec.tuner.seed is not None:
        keras.utils.set_random_seed(spec.tuner.seed)
    hyperparameters = hyperparameters.copy()
    for name in [name for name in hyperparameters.values if name.startswith(TUNER_VALUES)]:
        # The Hyperband round the trial trained in would size its schedule, not ``epochs``.
        del hyperparameters.values[name]
    hypermodel = build_hypermodel(
        spec.space,
        spec.dataset.image_size,
        len(data.images.class_names),
        steps_per_epoch=math.ceil(len(indices) / batch_size),
        epochs=epochs,
        # The trial built this very model under NAS_LIMIT_MAX_PARAMS already.
        max_params=None,
    )
    strategy = setup.placement.tf_strategy
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = hypermodel.build(hyperparameters)
    batches = (
        full_batches(indices, batch_size, spec.dataset.seed) if setup.full_batches else indices
    )
    # Through the HyperModel, as KerasTuner fits a trial: it may prepare the data (one-hot
    # labels for the codelab space's label smoothing).
    hypermodel.fit(
        hyperparameters,
        model,
        x=data.images.images[batches],
        y=data.images.labels[batches],
        epochs=epochs,
        batch_size=batch_size,
        callbacks=list(callbacks),
        verbose=0,
    )
    return model, len(indices)


def _train_one(
    setup: SearchSetup,
    trial: keras_tuner.engine.trial.Trial,
    rank: int,
    epochs: int,
    *,
    watch: FinalTrainingWatch,
    no_time: str,
) -> FinalModel:
    data = setup.data
    images = len(data.train) + len(data.validation)
    if epochs < 1:
        return _failed(trial.trial_id, rank, epochs, images, no_time)
    log.info(
        "training trial %s's architecture on %d photos for %d epochs",
        trial.trial_id,
        images,
        epochs,
    )
    started = time.perf_counter()
    try:
        model, images = train_final_model(setup, trial.hyperparameters, epochs, [watch])
    except (SearchStopped, LeaseLostError):
        raise
    except Exception as error:  # any failure of training leaves the trial's own model
        reason = f"{type(error).__name__}: {error}"
        return _failed(trial.trial_id, rank, epochs, images, reason, time.perf_counter() - started)
    seconds = time.perf_counter() - started
    trained = watch.epochs_done
    if trained < epochs:
        log.info("final training of trial %s stopped at the budget's deadline", trial.trial_id)
    return FinalModel(
        FinalTraining(
            trial.trial_id,
            rank,
            trained,
            images,
            seconds,
            None,
            planned_epochs=epochs if trained < epochs else None,
        ),
        model,
    )


def _failed(
    trial_id: str, rank: int, epochs: int, images: int, reason: str, seconds: float = 0.0
) -> FinalModel:
    log.warning("final training of trial %s failed: %s", trial_id, reason)
    return FinalModel(FinalTraining(trial_id, rank, epochs, images, seconds, None, reason), None)


class FinalTrainingWatch(keras.callbacks.Callback):
    """Stops a final training on SIGTERM (the search resumes later) or on cancel (the trials'
    own models are exported; asked between batches, at most every
    :data:`~nas.worker.supervision.CANCEL_POLL_SECONDS`, since no worker interrupts a
    finishing step for it), and when the search's lease is lost; ends it at an epoch's end
    before it would overrun ``deadline`` (on the monotonic clock; None: none), its epochs
    expected to last ``planned_epoch_seconds`` until it has timed one past its first."""

    def __init__(
        self,
        setup: SearchSetup,
        interruptions: Interruptions,
        cancel_requested: Callable[[], bool],
        deadline: float | None = None,
        planned_epoch_seconds: float | None = None,
    ) -> None:
        super().__init__()
        self._setup = setup
        self._interruptions = interruptions
        self._cancel_requested = cancel_requested
        self._deadline = deadline
        self._planned_epoch_seconds = planned_epoch_seconds
        self._epoch_started = time.monotonic()
        self._next_cancel_check = time.monotonic() + CANCEL_POLL_SECONDS
        #: Epochs trained to their end so far.
        self.epochs_done = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_started = time.monotonic()

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # A *_begin hook keeps Keras's asynchronous batch dispatch on.
        if self._interruptions.requested:
            raise SearchInterrupted
        self._raise_if_cancelled(time.monotonic())

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epochs_done += 1
        self._setup.ensure_held()
        now = time.monotonic()
        self._raise_if_cancelled(now)
        last = now - self._epoch_started
        next_epoch = next_epoch_seconds(self.epochs_done, last, self._planned_epoch_seconds)
        if stops_at_deadline(now, self._deadline, next_epoch):
            self.model.stop_training = True

    def _raise_if_cancelled(self, now: float) -> None:
        # One store query a poll interval at most, however short the batches and epochs.
        if now >= self._next_cancel_check:
            self._next_cancel_check = now + CANCEL_POLL_SECONDS
            if self._cancel_requested():
                raise SearchCancelled
