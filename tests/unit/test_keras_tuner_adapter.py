"""What ``nas.worker.keras_tuner_adapter`` relies on in KerasTuner's internals is still there.

A KerasTuner upgrade that moves or renames any of it fails here, by name, instead of deep
inside a search.
"""

from __future__ import annotations

import inspect

import keras
import keras_tuner
from keras_tuner.src import backend, utils
from keras_tuner.src.engine import oracle, stateful, tuner, tuner_utils
from keras_tuner.src.tuners import bayesian, hyperband, randomsearch

from nas.worker.keras_tuner_adapter import (
    ParsedTrials,
    PrivateTunerHooks,
    SeededDraws,
    end_failed_trials,
    load_saved_state,
    one_save_after,
    requeue_trials_of_dead_tuners,
    retry_no_ended_trial,
)


def test_state_files_are_written_through_utils_save_json() -> None:
    assert list(inspect.signature(utils.save_json).parameters) == ["path", "obj"]
    # Replacing the module attribute reaches only writes made through the module: the oracle,
    # trials and tuner save through Stateful.save, build configs through the tuner.
    for module in (stateful, tuner):
        source = inspect.getsource(module)
        assert "utils.save_json(" in source, module.__name__


def test_the_oracle_state_is_where_the_shared_oracle_reads_and_changes_it() -> None:
    for name in ("trials", "ongoing_trials", "end_order", "_retry_queue", "start_order"):
        assert f"self.{name} = " in inspect.getsource(oracle.Oracle.__init__), name
    # A new trial gets the next id, and is saved before the oracle (a cut leaves its file).
    assert "self.start_order.append(trial_id)" in inspect.getsource(oracle)
    assert "self._save_trial(trial)\n            self.save()" in inspect.getsource(oracle)
    for name in ("_get_oracle_fname", "_project_dir", "_save_trial"):
        assert hasattr(oracle.Oracle, name), name
    # load_saved_state reads the files where Oracle.save and Oracle._save_trial write them.
    assert 'os.path.join(self._project_dir, "oracle.json")' in inspect.getsource(
        oracle.Oracle._get_oracle_fname
    )
    trial_dir = inspect.getsource(oracle.Oracle._get_trial_dir)
    assert 'os.path.join(self._project_dir, f"trial_{str(trial_id)}")' in trial_dir
    save_trial = inspect.getsource(oracle.Oracle._save_trial)
    assert 'os.path.join(self._get_trial_dir(trial_id), "trial.json")' in save_trial
    assert (
        inspect.getsource(keras_tuner.engine.trial.Trial.load)
        .strip()
        .endswith("return cls.from_state(utils.load_json(fname))")
    )
    # ... and oracle.json itself: the order trials started and ended in.
    state = inspect.getsource(oracle.Oracle.get_state)
    assert '"start_order": self.start_order' in state and '"end_order": self.end_order' in state
    assert callable(backend.io.exists) and callable(backend.io.File)
    # create_trial (wrapped by @synchronized) serves the retry queue first, and a tuner's
    # ongoing trial again.
    create = inspect.getsource(oracle)
    assert "if tuner_id in self.ongoing_trials:" in create
    assert "self.trials[self._retry_queue.pop()]" in create


def test_the_private_tuner_hooks_overridden_still_exist_with_their_signatures() -> None:
    for name in ("_populate_initial_space", "_build_hypermodel", "_build_and_fit_model"):
        assert name in vars(PrivateTunerHooks)
        ours = list(inspect.signature(getattr(PrivateTunerHooks, name)).parameters)
        # Defined on KerasTuner's base tuner, with the same parameters as the override.
        theirs = getattr(keras_tuner.Tuner, name)
        assert list(inspect.signature(theirs).parameters) == ours, name


def test_a_trial_s_fit_gets_the_best_epoch_checkpoint_last_through_build_and_fit_model() -> None:
    # Tuner.run_trial appends SaveBestEpoch after the caller's callbacks and hands them to
    # _build_and_fit_model, where the backup is moved after it.
    run_trial = inspect.getsource(tuner.Tuner.run_trial)
    assert "model_checkpoint = tuner_utils.SaveBestEpoch(" in run_trial
    assert run_trial.index("callbacks.append(model_checkpoint)") < run_trial.index(
        "self._build_and_fit_model(trial, *args, **copied_kwargs)"
    )
    # A resumed fit sets its best value (its file read whole): it saves only a better epoch.
    best_epoch = inspect.getsource(tuner_utils.SaveBestEpoch.__init__)
    assert "self.best_value = " in best_epoch and "self.filepath = filepath" in best_epoch
    saves = inspect.getsource(tuner_utils.SaveBestEpoch.on_epoch_end)
    assert "if self.objective.better_than(current_value, self.best_value):" in saves


def test_a_trial_backup_knows_where_keras_writes_the_latest_backup_and_the_one_before() -> None:
    init = inspect.getsource(keras.callbacks.BackupAndRestore.__init__)
    for name in (
        "_weights_path",
        "_training_metadata_path",
        "_prev_weights_path",
        "_prev_training_metadata_path",
    ):
        assert f"self.{name} = " in init, name
    # The weights first, then the epoch; the one before is copied aside before either.
    save = inspect.getsource(keras.callbacks.BackupAndRestore._save_model)
    assert save.index("file_utils.copy(self._weights_path, self._prev_weights_path)") < save.index(
        "self.model.save_weights(filepath=self._weights_path"
    )
    assert save.index("self.model.save_weights(") < save.index('"epoch": self._current_epoch')
    restore = inspect.getsource(keras.callbacks.BackupAndRestore.on_train_begin)
    assert "self._load_model()" in restore


def test_every_algorithm_draws_its_first_trials_through_oracle_random_values() -> None:
    assert list(inspect.signature(oracle.Oracle._random_values).parameters) == ["self"]
    assert list(inspect.signature(oracle.Oracle._duplicate).parameters) == ["self", "values"]
    assert "_random_values" in vars(SeededDraws)
    for module in (randomsearch, bayesian, hyperband):
        assert "self._random_values()" in inspect.getsource(module), module.__name__


def test_hyperband_resumes_a_trial_from_the_checkpoint_its_hyperparameters_name() -> None:
    # CheckpointResumingTuner skips Hyperband's __init__, which must only build its oracle.
    init = inspect.getsource(keras_tuner.Hyperband.__init__)
    assert "oracle = HyperbandOracle(" in init
    assert "super().__init__(oracle=oracle, hypermodel=hypermodel, **kwargs)" in init
    run_trial = inspect.getsource(keras_tuner.Hyperband.run_trial)
    assert 'fit_kwargs["initial_epoch"] = hp.values["tuner/initial_epoch"]' in run_trial
    assert 'fit_kwargs["epochs"] = hp.values["tuner/epochs"]' in run_trial
    build = inspect.getsource(keras_tuner.Hyperband._build_hypermodel)
    assert 'trial_id = hp.values["tuner/trial_id"]' in build
    assert "model.load_weights(self._get_checkpoint_fname(trial_id))" in build
    # Its oracle's hash of a configuration leaves the epochs and rung out.
    hashed = inspect.getsource(keras_tuner.oracles.HyperbandOracle._compute_values_hash)
    for key in ("tuner/epochs", "tuner/initial_epoch", "tuner/round"):
        assert f'values.pop("{key}", None)' in hashed


def _oracle(directory: str) -> keras_tuner.Oracle:
    space = keras_tuner.HyperParameters()
    space.Int("units", 1, 100)
    made = keras_tuner.oracles.RandomSearchOracle(
        objective=keras_tuner.Objective("score", "max"),
        max_trials=5,
        hyperparameters=space,
        seed=1,
    )
    made._set_project_dir(directory, "search")
    return made


def test_a_trial_ended_just_before_a_kill_is_not_run_again(tmp_path) -> None:
    first = _oracle(str(tmp_path))
    finished = first.create_trial("trials-1")
    finished.status = "COMPLETED"
    first.update_trial(finished.trial_id, {"score": 0.5})
    first.end_trial(finished)
    # The state end_trial saved: the ended trial still listed as ongoing (it is taken off
    # only after the save), as a worker killed before the oracle's next save leaves it.
    first.ongoing_trials["trials-1"] = finished
    first.save()

    resumed = _oracle(str(tmp_path))
    resumed.reload()
    assert finished.trial_id in resumed._retry_queue  # what KerasTuner would rerun
    retry_no_ended_trial(resumed)

    assert resumed.create_trial("trials-1").trial_id != finished.trial_id


def test_a_trial_invalid_before_a_kill_is_still_retried(tmp_path) -> None:
    first = _oracle(str(tmp_path))
    running = first.create_trial("trials-1")
    first.save()  # killed mid-trial: it never ended

    resumed = _oracle(str(tmp_path))
    resumed.reload()
    retry_no_ended_trial(resumed)

    assert resumed.create_trial("trials-1").trial_id == running.trial_id


def test_a_reload_keeps_the_ongoing_trials_of_other_tuners(tmp_path) -> None:
    first = _oracle(str(tmp_path))
    assert not load_saved_state(first), "nothing saved yet"
    running = first.create_trial("slot-a")
    other = _oracle(str(tmp_path))

    assert load_saved_state(other)

    assert other.ongoing_trials["slot-a"].trial_id == running.trial_id
    assert other._retry_queue == []
    assert other.create_trial("slot-b").trial_id != running.trial_id


def test_the_trial_of_a_dead_tuner_is_retried_by_the_next_one(tmp_path) -> None:
    first = _oracle(str(tmp_path))
    lost = first.create_trial("dead")
    kept = first.create_trial("alive")
    resumed = _oracle(str(tmp_path))
    load_saved_state(resumed)

    assert requeue_trials_of_dead_tuners(resumed, {"alive", "next"}) == [lost.trial_id]

    assert set(resumed.ongoing_trials) == {"alive"}
    assert resumed.create_trial("next").trial_id == lost.trial_id
    assert resumed.ongoing_trials["alive"].trial_id == kept.trial_id


def test_a_trial_the_store_failed_is_ended_and_never_retried(tmp_path) -> None:
    first = _oracle(str(tmp_path))
    doomed = first.create_trial("dead")
    resumed = _oracle(str(tmp_path))
    load_saved_state(resumed)
    requeue_trials_of_dead_tuners(resumed, set())

    assert end_failed_trials(resumed, {doomed.trial_id: "its worker kept dying"}) == [
        doomed.trial_id
    ]

    ended = resumed.get_trial(doomed.trial_id)
    assert (ended.status, ended.message) == ("FAILED", "its worker kept dying")
    assert doomed.trial_id in resumed.end_order and resumed._retry_queue == []
    assert resumed.create_trial("next").trial_id != doomed.trial_id
    assert end_failed_trials(resumed, {doomed.trial_id: "again"}) == [], "ended once"


def test_a_trial_whose_step_was_cut_before_the_oracle_saved_is_forgotten(tmp_path) -> None:
    first = _oracle(str(tmp_path))
    kept = first.create_trial("slot-a")
    first.save = lambda: None  # killed between the trial's file and oracle.json
    first.create_trial("slot-b")
    resumed = _oracle(str(tmp_path))

    load_saved_state(resumed)

    assert list(resumed.trials) == [kept.trial_id]
    again = resumed.create_trial("slot-c")
    assert again.trial_id == "1" and resumed.trials["1"] is again, "its id is given out again"


def _ended_trial(made: keras_tuner.Oracle, tuner_id: str, score: float) -> str:
    trial = made.create_trial(tuner_id)
    made.update_trial(trial.trial_id, {"score": score})
    trial.status = "COMPLETED"
    made.end_trial(trial)
    return trial.trial_id


def test_a_reload_reads_no_ended_trial_again(tmp_path) -> None:
    first = _oracle(str(tmp_path))
    ended = _ended_trial(first, "slot-a", 1.0)
    parsed = ParsedTrials()
    other = _oracle(str(tmp_path))
    load_saved_state(other, parsed)
    kept = other.trials[ended]
    (tmp_path / "search" / f"trial_{ended}" / "trial.json").write_text("not read")

    load_saved_state(other, parsed)

    assert other.trials[ended] is kept and parsed.ended_trial(ended) is kept
    assert other.get_best_trials(1)[0].score == 1.0


def test_a_reload_parses_a_running_trial_again_only_when_it_is_not_as_saved(tmp_path) -> None:
    first = _oracle(str(tmp_path))
    running = first.create_trial("slot-a")
    parsed = ParsedTrials()
    other = _oracle(str(tmp_path))
    load_saved_state(other, parsed)
    before = other.trials[running.trial_id]

    load_saved_state(other, parsed)
    assert other.trials[running.trial_id] is before, "unchanged: not parsed again"
    assert parsed.ended_trial(running.trial_id) is None
    # The tuner that runs it changes the object it was given.
    before.status = "COMPLETED"
    load_saved_state(other, parsed)
    assert other.trials[running.trial_id].status == "RUNNING"
    # Another worker's steps change its file.
    first.update_trial(running.trial_id, {"score": 0.5})
    load_saved_state(other, parsed)
    assert other.trials[running.trial_id].metrics.get_last_value("score") == 0.5
    running.status = "COMPLETED"
    first.end_trial(running)
    load_saved_state(other, parsed)
    assert (other.trials[running.trial_id].status, other.trials[running.trial_id].score) == (
        "COMPLETED",
        0.5,
    )
    assert parsed.ended_trial(running.trial_id) is other.trials[running.trial_id]


def test_a_trial_the_store_failed_elsewhere_is_parsed_again_ended(tmp_path) -> None:
    first = _oracle(str(tmp_path))
    doomed = first.create_trial("dead")
    parsed = ParsedTrials()
    other = _oracle(str(tmp_path))
    load_saved_state(other, parsed)
    assert other.trials[doomed.trial_id].status == "RUNNING"
    # Another worker's step ends it as failed: its file is written again, then oracle.json.
    load_saved_state(first)
    end_failed_trials(first, {doomed.trial_id: "its worker kept dying"})
    first.save()

    load_saved_state(other, parsed)

    failed = other.trials[doomed.trial_id]
    assert (failed.status, failed.message) == ("FAILED", "its worker kept dying")
    assert parsed.ended_trial(doomed.trial_id) is failed


def test_a_trial_file_a_cut_step_left_is_ignored_by_a_process_that_parsed_trials(
    tmp_path,
) -> None:
    first = _oracle(str(tmp_path))
    ended = _ended_trial(first, "slot-a", 1.0)
    parsed = ParsedTrials()
    other = _oracle(str(tmp_path))
    load_saved_state(other, parsed)
    first.save = lambda: None  # killed between the new trial's file and oracle.json
    left = first.create_trial("slot-b")

    load_saved_state(other, parsed)

    assert list(other.trials) == [ended] and left.trial_id not in parsed.by_id
    again = other.create_trial("slot-c")
    assert again.trial_id == left.trial_id, "its id is given out again"


def test_the_ended_trials_noted_after_a_save_are_the_saved_ones(tmp_path) -> None:
    made = _oracle(str(tmp_path))
    ended = _ended_trial(made, "slot-a", 1.0)
    parsed = ParsedTrials()

    parsed.note_ended(made)

    assert parsed.ended_trial(ended) is made.trials[ended]
    other = _oracle(str(tmp_path))
    load_saved_state(other, parsed)
    assert other.trials[ended] is made.trials[ended], "not parsed again"


def _oracle_writes(monkeypatch, made: keras_tuner.Oracle) -> list[str]:
    written: list[str] = []
    save_json = utils.save_json

    def counted(path: str, obj: object) -> str:
        if path == made._get_oracle_fname():
            written.append(path)
        return save_json(path, obj)

    monkeypatch.setattr(utils, "save_json", counted)
    return written


def test_create_and_end_leave_the_one_save_of_oracle_json_to_the_caller(
    tmp_path, monkeypatch
) -> None:
    assert "self._save_trial(trial)\n            self.save()" in inspect.getsource(oracle)
    assert "self._save_trial(trial)\n        self.save()" in inspect.getsource(oracle)
    made = _oracle(str(tmp_path))
    written = _oracle_writes(monkeypatch, made)

    with one_save_after(made):
        trial = made.create_trial("slot-a")
        made.update_trial(trial.trial_id, {"score": 0.5})
        trial.status = "COMPLETED"
        made.end_trial(trial)
    assert written == [], "KerasTuner's own saves skipped"
    made.save()

    assert len(written) == 1
    other = _oracle(str(tmp_path))
    load_saved_state(other)
    # Saved after end_trial took the ended trial off the ongoing ones.
    assert other.ongoing_trials == {} and other.end_order == [trial.trial_id]
    assert other.trials[trial.trial_id].score == 0.5
    made.create_trial("slot-a")
    assert len(written) == 2, "saves again outside"
