"""The search-quality benchmark's budget-only presets: the ``tiny-default`` preset gives the
service nothing but the photos and a time budget, and reports beside the search's best model
the space's default architecture trained plainly for the same budget, on the same test photos.

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
TINY_DEFAULT_BUDGET = 45  # the tiny-default preset's seconds


def test_the_tiny_default_preset_reports_the_search_beside_its_baseline(tmp_path: Path) -> None:
    report = tmp_path / "outcome.json"
    finished = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks.search_quality", "--preset", "tiny-default"),
            *("--data", str(FLOWERS), "--json", str(report)),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    # The service must accept a body of only the photos and a budget.
    assert "refused the search" not in finished.stderr, finished.stderr[-3000:]
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    outcome = json.loads(report.read_text())

    assert outcome["status"] == "succeeded"
    assert outcome["budget_seconds"] == TINY_DEFAULT_BUDGET
    # 8 photos of each class: 2 held out for the test, in the search and in the baseline alike.
    assert outcome["test_photos"] == 5 * 2
    assert outcome["test_accuracy"] is not None and 0.0 <= outcome["test_accuracy"] <= 1.0
    [final] = outcome["final_training"]
    assert final["images"] == outcome["train_photos"] + outcome["validation_photos"]
    assert final["test_accuracy"] == outcome["test_accuracy"]

    baseline = outcome["baseline"]
    assert baseline["test_photos"] == outcome["test_photos"]
    # It validates on 1 photo of each class of the other 6 and trains on the rest.
    assert baseline["train_photos"] == 5 * 5
    assert baseline["epochs"] >= 1 and baseline["epoch_seconds"] > 0
    assert baseline["test_accuracy"] is not None and 0.0 <= baseline["test_accuracy"] <= 1.0
