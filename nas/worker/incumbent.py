"""Which of a search's trials come first when it trains and exports its best: the trials by
score, except that the space's defaults (the search's first trial, a known-good convnet) keep
first place unless another architecture beat them, at the same fidelity, by more than its
validation photos can tell apart.

Why: a multi-fidelity search ranks architectures after a few epochs, and the final training
then runs several times as many. Within the noise of a few hundred validation photos the
ranking says nothing, while its bias does not go away: configurations that learn fast (no
augmentation, small models) lead early and are overtaken when trained long. A challenger
must beat the incumbent clearly before it replaces it, as in SMAC's intensification.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Contender:
    """A completed trial as the choice sees it."""

    trial_id: str
    score: float
    #: The epochs its configuration was judged at (a promoted trial's total); equal for every
    #: trial of a search without fidelities.
    fidelity: float
    #: The trial its chain of promotions started from (itself when never promoted).
    origin: str


def distinguishable(
    leader: float, incumbent: float, validation_images: int, margin: float = 1.0
) -> bool:
    """Whether accuracy ``leader`` beats ``incumbent`` by more than ``margin`` standard errors
    of the difference of two accuracies measured on ``validation_images`` photos each."""
    if validation_images <= 0:
        return leader > incumbent
    spread = incumbent * (1.0 - incumbent)
    return leader - incumbent > margin * math.sqrt(2.0 * spread / validation_images)


def choose(
    ranked: Sequence[Contender],
    *,
    first_trial_id: str,
    validation_images: int,
    top_k: int,
    margin: float = 1.0,
) -> list[str]:
    """The ids of the ``top_k`` trials to train and export, first first, from ``ranked``
    (every completed trial, best score first, accuracy scores): the first trial's chain (its
    furthest promotion) leads when the leader did not beat it by ``margin`` standard errors
    (see :func:`distinguishable`) at no more epochs. A ``margin`` of 0 keeps the score order."""
    ids = [contender.trial_id for contender in ranked]
    incumbents = [c for c in ranked if c.origin == first_trial_id]
    if not ranked or not incumbents or margin == 0:
        return ids[:top_k]
    leader = ranked[0]
    # Its furthest promotion (the best of those, on a tie): the one judged at most epochs.
    incumbent = max(incumbents, key=lambda contender: contender.fidelity)
    if (
        incumbent is leader
        or incumbent.fidelity < leader.fidelity
        or distinguishable(leader.score, incumbent.score, validation_images, margin)
    ):
        return ids[:top_k]
    ids.remove(incumbent.trial_id)
    return [incumbent.trial_id, *ids][:top_k]
