"""The search-quality benchmark keeps working: its tiny preset, end to end on real photos."""

from __future__ import annotations

import pytest

from benchmarks.search_quality import PRESETS, run
from tests.flowers import FLOWERS

pytestmark = pytest.mark.slow


def test_the_tiny_preset_reports_the_services_test_accuracy() -> None:
    outcome = run("tiny", FLOWERS)

    assert outcome.status == "succeeded"
    # 8 photos of each class: 2 held out for the test, then 1 of the other 6 for validation
    assert outcome.test_photos == 5 * 2
    assert (outcome.train_photos, outcome.validation_photos) == (5 * 5, 5 * 1)
    assert outcome.trials == PRESETS["tiny"].tuner["max_trials"]
    assert outcome.test_accuracy is not None and 0.0 <= outcome.test_accuracy <= 1.0
    assert outcome.validation_accuracy is not None
    assert outcome.best_hyperparameters["conv_blocks"] == 2
