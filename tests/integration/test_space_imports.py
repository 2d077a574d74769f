"""The limits and parameter counts of the search spaces load without TensorFlow or Keras (the
API imports them), probed in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_importing_the_limits_and_counts_does_not_import_tensorflow_or_keras() -> None:
    probe = (
        "import sys, nas.core.spaces.limits, nas.core.spaces.parameter_counts; "
        "print(sorted({'tensorflow', 'keras', 'keras_tuner'} & set(sys.modules)))"
    )

    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "[]"
