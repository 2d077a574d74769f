"""The search-quality benchmark keeps working, end to end on real photos: its ``tiny`` preset,
and its budget-only ``tiny-default`` preset, which gives the service nothing but the photos and
a time budget and reports beside the search's best model the space's default architecture
trained plainly for the same budget, on the same test photos.

Run as a user runs it (``python -m benchmarks.search_quality``): the tests import no benchmark.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.flowers import FLOWERS

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
TINY_TRIALS = 1  # the tiny preset's max_trials
TINY_DEFAULT_BUDGET = 45  # the tiny-default preset's seconds
CLOSING_SECONDS = 2.0


def run_preset(preset: str, tmp_path: Path, timeout: float) -> dict[str, Any]:
    """The outcome ``python -m benchmarks.search_quality --preset PRESET --json`` writes."""
    report = tmp_path / "outcome.json"
    finished = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks.search_quality", "--preset", preset),
            *("--data", str(FLOWERS), "--json", str(report)),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    # The service must accept the preset's body (a budget-only one included).
    assert "refused the search" not in finished.stderr, finished.stderr[-3000:]
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    return json.loads(report.read_text())


def test_the_tiny_preset_reports_the_services_test_accuracy(tmp_path: Path) -> None:
    outcome = run_preset("tiny", tmp_path, timeout=600)

    assert outcome["status"] == "succeeded"
    # 8 photos of each class: 2 held out for the test, then 1 of the other 6 for validation
    assert outcome["test_photos"] == 5 * 2
    assert (outcome["train_photos"], outcome["validation_photos"]) == (5 * 5, 5 * 1)
    assert outcome["trials"] == TINY_TRIALS
    assert outcome["test_accuracy"] is not None and 0.0 <= outcome["test_accuracy"] <= 1.0
    assert outcome["validation_accuracy"] is not None
    assert outcome["best_hyperparameters"]["conv_blocks"] == 2


def test_the_tiny_default_preset_reports_the_search_beside_its_baseline(tmp_path: Path) -> None:
    outcome = run_preset("tiny-default", tmp_path, timeout=900)

    assert outcome["status"] == "succeeded"
    assert outcome["budget_seconds"] == TINY_DEFAULT_BUDGET
    # 8 photos of each class: 2 held out for the test, in the search and in the baseline alike.
    assert outcome["test_photos"] == 5 * 2
    assert outcome["test_accuracy"] is not None and 0.0 <= outcome["test_accuracy"] <= 1.0
    [final] = outcome["final_training"]
    assert final["images"] == outcome["train_photos"] + outcome["validation_photos"]
    assert final["test_accuracy"] == outcome["test_accuracy"], final
    # The budget holds, the final training, the export and the test of the models included:
    # within one of the final training's epochs (and the moment it takes to close the search).
    final_epoch = final["seconds"] / final["epochs"]
    assert outcome["service_wall_seconds"] <= TINY_DEFAULT_BUDGET + final_epoch + CLOSING_SECONDS

    baseline = outcome["baseline"]
    assert baseline["test_photos"] == outcome["test_photos"]
    # It validates on 1 photo of each class of the other 6 and trains on the rest.
    assert baseline["train_photos"] == 5 * 5
    assert baseline["epochs"] >= 1 and baseline["epoch_seconds"] > 0
    assert baseline["test_accuracy"] is not None and 0.0 <= baseline["test_accuracy"] <= 1.0
