"""KerasTuner's state files survive a SIGKILL at any moment of their writing."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

from keras_tuner.src import utils as keras_tuner_utils

from nas.worker.keras_tuner_adapter import write_tuner_state_atomically

# Large enough that a write takes a while, so that kills land inside one.
STATE = {
    "trials": {
        str(number): {"score": number / 7, "values": list(range(200))} for number in range(300)
    }
}


def keep_saving(path: str) -> None:
    write_tuner_state_atomically()
    while True:
        # As KerasTuner's Stateful.save and Tuner do: through the module attribute.
        keras_tuner_utils.save_json(path, STATE)


def test_state_file_is_whole_after_sigkill_mid_write(tmp_path: Path) -> None:
    state_file = tmp_path / "oracle.json"
    keras_tuner_utils.save_json(str(state_file), STATE)
    fork = multiprocessing.get_context("fork")
    generator = random.Random(7)
    for _ in range(25):
        writer = fork.Process(target=keep_saving, args=(str(state_file),))
        writer.start()
        time.sleep(generator.uniform(0.05, 0.3))
        os.kill(writer.pid, signal.SIGKILL)  # type: ignore[arg-type]
        writer.join()
        assert keras_tuner_utils.load_json(str(state_file)) == STATE
    leftovers = [path.name for path in tmp_path.iterdir() if path != state_file]
    # A killed write may leave its hidden temporary file; never a second state file.
    assert all(name.startswith(".") and name.endswith(".json.tmp") for name in leftovers)
