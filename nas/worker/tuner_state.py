"""KerasTuner's state files, written so that a killed worker never leaves one half-written.

KerasTuner saves its oracle, trials, tuner and build configs as JSON by opening the file for
writing and then writing it: a worker killed in between leaves an empty or cut file, and the
worker that takes the search over fails to reload it. Written to a temporary file beside it
and renamed over it, a state file is always either the old one or the new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any

from keras_tuner.src import utils as keras_tuner_utils

_keras_tuner_save_json = keras_tuner_utils.save_json


def save_json_atomically(path: str, obj: Any) -> str:
    """Write ``obj`` as JSON to ``path`` in one rename; returns the JSON text, as KerasTuner's
    ``save_json`` does. Remote paths (``gs://``) keep KerasTuner's write: an object store
    publishes an object only once it is closed."""
    if "://" in path:
        return _keras_tuner_save_json(path, obj)
    text = json.dumps(obj)
    descriptor, temporary = tempfile.mkstemp(
        dir=os.path.dirname(path) or ".", prefix=".", suffix=".json.tmp"
    )
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
            file.flush()
            # Without it a machine crash could rename an empty file into place.
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return text


def write_tuner_state_atomically() -> None:
    """Make every KerasTuner state write in this process atomic (idempotent)."""
    # KerasTuner's modules call ``utils.save_json`` through the module, so replacing the
    # module attribute reaches the oracle, trial, tuner and build-config writes.
    keras_tuner_utils.save_json = save_json_atomically
