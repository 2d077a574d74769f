"""The order a search trains and exports its trials in: the defaults keep first place unless
beaten distinguishably at no more epochs."""

from __future__ import annotations

import math

import pytest

from nas.worker.incumbent import Contender, choose, distinguishable

FIRST = "0000"


def ranked(*contenders: Contender) -> list[Contender]:
    return sorted(contenders, key=lambda contender: -contender.score)


def test_a_leader_within_the_validation_noise_yields_first_place_to_the_defaults() -> None:
    # As measured on 64 px flowers: a small net without augmentation led at 20 epochs by 0.7
    # points on 425 validation photos (one standard error is ~3.1 points) and lost by 7 on
    # the test photos once both were trained for 100+ epochs.
    trials = ranked(
        Contender("0036", 0.715, 20, "0034"),
        Contender("0011", 0.708, 20, FIRST),
        Contender("0040", 0.704, 20, "0038"),
        Contender("0003", 0.642, 7, FIRST),
        Contender(FIRST, 0.60, 3, FIRST),
    )
    order = choose(trials, first_trial_id=FIRST, validation_images=425, top_k=3)
    assert order == ["0011", "0036", "0040"]


def test_a_leader_beyond_the_noise_keeps_first_place() -> None:
    trials = ranked(Contender("0036", 0.80, 20, "0034"), Contender("0011", 0.70, 20, FIRST))
    assert choose(trials, first_trial_id=FIRST, validation_images=425, top_k=2) == [
        "0036",
        "0011",
    ]


def test_defaults_judged_at_fewer_epochs_than_the_leader_do_not_compete() -> None:
    # ASHA did not promote them as far: at the leader's fidelity they lost.
    trials = ranked(Contender("0036", 0.715, 20, "0034"), Contender("0003", 0.71, 7, FIRST))
    assert choose(trials, first_trial_id=FIRST, validation_images=425, top_k=2)[0] == "0036"


def test_the_furthest_promotion_of_the_defaults_is_their_incumbent() -> None:
    # Their 7-epoch round scored higher than their 20-epoch one, but was judged at fewer.
    trials = ranked(
        Contender("0036", 0.72, 20, "0034"),
        Contender("0003", 0.721, 7, FIRST),
        Contender("0011", 0.70, 20, FIRST),
    )
    assert choose(trials, first_trial_id=FIRST, validation_images=425, top_k=1) == ["0011"]


def test_defaults_outside_the_top_k_come_in_first_and_push_the_last_out() -> None:
    trials = ranked(
        Contender("0005", 0.72, math.inf, "0005"),
        Contender("0004", 0.715, math.inf, "0004"),
        Contender(FIRST, 0.70, math.inf, FIRST),
    )
    assert choose(trials, first_trial_id=FIRST, validation_images=400, top_k=2) == [
        FIRST,
        "0005",
    ]


def test_without_the_defaults_among_the_completed_trials_the_order_is_by_score() -> None:
    trials = ranked(Contender("0002", 0.6, math.inf, "0002"), Contender("0001", 0.5, 1, "0001"))
    assert choose(trials, first_trial_id=FIRST, validation_images=400, top_k=3) == [
        "0002",
        "0001",
    ]
    assert choose([], first_trial_id=FIRST, validation_images=400, top_k=3) == []


@pytest.mark.parametrize(
    ("leader", "incumbent", "images", "expected"),
    [
        (0.74, 0.70, 425, True),  # 4 points, over one standard error of ~3.1
        (0.72, 0.70, 425, False),
        (0.72, 0.70, 10_000, True),  # many photos tell 2 points apart
        (0.71, 0.70, 0, True),  # no photos to tell: the score decides
    ],
)
def test_distinguishable_is_one_standard_error_of_the_difference(
    leader: float, incumbent: float, images: int, expected: bool
) -> None:
    assert distinguishable(leader, incumbent, images) is expected


def test_a_margin_of_zero_keeps_the_score_order() -> None:
    trials = ranked(Contender("0036", 0.715, 20, "0034"), Contender("0011", 0.715, 20, FIRST))
    assert choose(trials, first_trial_id=FIRST, validation_images=425, top_k=2, margin=0) == [
        "0036",
        "0011",
    ]


def test_a_wider_margin_asks_more_of_the_leader() -> None:
    trials = ranked(Contender("0036", 0.74, 20, "0034"), Contender("0011", 0.70, 20, FIRST))
    # 4 points: over one standard error (~3.1) but not two.
    assert choose(trials, first_trial_id=FIRST, validation_images=425, top_k=1) == ["0036"]
    assert choose(trials, first_trial_id=FIRST, validation_images=425, top_k=1, margin=2.0) == [
        "0011"
    ]
