"""The search-quality benchmark keeps working: its tiny preset, end to end on real photos.

Run as a user runs it (``python -m benchmarks.search_quality``): the tests import no benchmark.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.flowers import FLOWERS

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
TINY_TRIALS = 1  # the tiny preset's max_trials


def test_the_tiny_preset_reports_the_services_test_accuracy(tmp_path: Path) -> None:
    report = tmp_path / "outcome.json"
    finished = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks.search_quality", "--preset", "tiny"),
            *("--data", str(FLOWERS), "--json", str(report)),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    outcome = json.loads(report.read_text())

    assert outcome["status"] == "succeeded"
    # 8 photos of each class: 2 held out for the test, then 1 of the other 6 for validation
    assert outcome["test_photos"] == 5 * 2
    assert (outcome["train_photos"], outcome["validation_photos"]) == (5 * 5, 5 * 1)
    assert outcome["trials"] == TINY_TRIALS
    assert outcome["test_accuracy"] is not None and 0.0 <= outcome["test_accuracy"] <= 1.0
    assert outcome["validation_accuracy"] is not None
    assert outcome["best_hyperparameters"]["conv_blocks"] == 2
