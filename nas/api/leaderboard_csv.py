"""The leaderboard as CSV, for spreadsheets and dataframes."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from nas.api.schemas import TrialOut

#: The columns every row has, before one ``hp_NAME`` column per hyperparameter.
COLUMNS = (
    "rank",
    "trial_id",
    "status",
    "score",
    "test_accuracy",
    "final_epochs",
    "params",
    "epochs",
    "seconds",
    "stop_reason",
    "worker_id",
    "hostname",
)
HYPERPARAMETER_PREFIX = "hp_"


def leaderboard_csv(trials: Sequence[TrialOut]) -> str:
    """One row per trial in the given (ranked) order; each hyperparameter seen in any trial
    gets its own column, empty for trials without it (conditional ones, such as the filters of
    a block a shallower model does not have)."""
    names = sorted({name for trial in trials for name in trial.hyperparameters})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*COLUMNS, *(HYPERPARAMETER_PREFIX + name for name in names)])
    for trial in trials:
        writer.writerow(
            [getattr(trial, column) for column in COLUMNS]
            + [trial.hyperparameters.get(name) for name in names]
        )
    return buffer.getvalue()
