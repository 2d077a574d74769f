"""What ``nas.worker.keras_tuner_adapter`` relies on in KerasTuner's internals is still there.

A KerasTuner upgrade that moves or renames any of it fails here, by name, instead of deep
inside a search.
"""

from __future__ import annotations

import inspect

import keras_tuner
from keras_tuner.src import protos, utils
from keras_tuner.src.distribute import oracle_chief
from keras_tuner.src.engine import stateful, tuner

from nas.worker.keras_tuner_adapter import PrivateTunerHooks


def test_state_files_are_written_through_utils_save_json() -> None:
    assert list(inspect.signature(utils.save_json).parameters) == ["path", "obj"]
    # Replacing the module attribute reaches only writes made through the module: the oracle,
    # trials and tuner save through Stateful.save, build configs through the tuner.
    for module in (stateful, tuner):
        source = inspect.getsource(module)
        assert "utils.save_json(" in source, module.__name__


def test_the_oracle_servicer_of_distributed_tuning_is_there() -> None:
    assert callable(protos.get_service_grpc().add_OracleServicer_to_server)
    assert list(inspect.signature(oracle_chief.OracleServicer).parameters) == ["oracle"]


def test_the_private_tuner_hooks_overridden_still_exist_with_their_signatures() -> None:
    for name in ("_populate_initial_space", "_build_hypermodel"):
        assert name in vars(PrivateTunerHooks)
        ours = list(inspect.signature(getattr(PrivateTunerHooks, name)).parameters)
        # Defined on KerasTuner's base tuner, with the same parameters as the override.
        theirs = getattr(keras_tuner.Tuner, name)
        assert list(inspect.signature(theirs).parameters) == ours, name
