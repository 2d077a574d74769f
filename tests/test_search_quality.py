"""The search-quality benchmark keeps working: its tiny preset, end to end on real photos."""

from __future__ import annotations

import pytest

from benchmarks.search_quality import PRESETS, run
from tests.flowers import FLOWERS

pytestmark = pytest.mark.slow


def test_the_tiny_preset_scores_the_best_model_on_held_out_photos() -> None:
    outcome = run("tiny", FLOWERS)

    assert outcome.status == "succeeded"
    assert outcome.test_photos == 5 * 2 and outcome.train_photos == 5 * 6
    assert outcome.trials == PRESETS["tiny"].tuner["max_trials"]
    assert outcome.test_accuracy is not None and 0.0 <= outcome.test_accuracy <= 1.0
    assert outcome.validation_accuracy is not None
    assert outcome.best_hyperparameters["conv_blocks"] == 2
