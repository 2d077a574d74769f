"""How good a model a search through the service finds, on photos no trial saw.

A throwaway service (``benchmarks.harness``) searches the photos with ``dataset.test_split``:
it holds out a stratified, seeded share of each class that no trial sees, and scores every
exported model on it after the search.

    python -m benchmarks.search_quality --preset cpu64        # 64 px, for a 2-core CPU
    python -m benchmarks.search_quality --preset gpu192       # 192 px, for one H100
    python -m benchmarks.search_quality --preset tiny --data ../shared/datasets/flowers

The ``-default`` presets give the service only the photos and a time budget, as a new user
would, and also train the baseline to beat in the same run, on the same test photos: the
space's default architecture trained plainly (every hyperparameter at its default, one trial,
no early stopping, 95% of the other photos for training) for as many epochs as fit the budget.

    python -m benchmarks.search_quality --preset cpu64-default    # 64 px, 20 minutes
    python -m benchmarks.search_quality --preset gpu192-default   # 192 px, 10 minutes

``digits-default`` does the same on a data set the project never tuned for: scikit-learn's
handwritten digits at 32 px, 5 minutes (build the folder first with
``python -m benchmarks.make_digits``).

Prints the best model's test accuracy, the best trial's validation accuracy, the trials and
epochs run and the wall time (and the baseline's); ``--json`` also writes them to a file.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import DIGITS, FLOWERS, Service, running_service
from nas.core.spaces.codelab_v2 import SMALL_DATA_FOCUS

#: The space whose default architecture the baseline trains.
DEFAULT_SPACE = ("codelab_convnet", 2)
#: The share of the non-test photos the baseline validates on (it trains on the rest).
BASELINE_VALIDATION_SPLIT = 0.05
#: Epochs of the probe that times the baseline's epochs before it trains.
PROBE_EPOCHS = 2
#: The most epochs a body may ask for; the service under test allows that many per trial,
#: as the baseline of a long budget on small photos may need.
MOST_EPOCHS = 1000


@dataclass(frozen=True)
class Preset:
    """A benchmark size: photos, held-out share, and the search's space and tuner, or only a
    time budget (then the service plans the search, and a baseline trains beside it).

    ``data`` is the folder searched unless ``--data`` names another; ``data_command`` builds
    it where it is not a shared data set."""

    image_size: int
    test_split: float
    tuner: dict[str, Any] | None = None
    space: dict[str, Any] | None = None
    images_per_class: int | None = None
    parallel_trials: int = 1
    budget_seconds: int | None = None
    data: Path = FLOWERS
    data_command: str | None = None


PRESETS = {
    "tiny": Preset(
        image_size=32,
        test_split=0.25,
        images_per_class=8,
        space={"version": 2, "hyperparameters": {"conv_blocks": {"fixed": 2}}},
        tuner={"algorithm": "random", "max_trials": 1, "epochs": 1, "batch_size": 8, "seed": 1},
    ),
    "cpu64": Preset(
        image_size=64,
        test_split=0.15,
        space={"version": 2, "hyperparameters": SMALL_DATA_FOCUS},
        tuner={
            "algorithm": "random",
            "max_trials": 3,
            "epochs": 24,
            "batch_size": 32,
            "patience": 6,
            "seed": 1,
        },
    ),
    "gpu192": Preset(
        image_size=192,
        test_split=0.15,
        space={
            "version": 2,
            "hyperparameters": {
                **SMALL_DATA_FOCUS,
                "conv_blocks": {"values": [5, 6]},
                "base_filters": {"values": [32, 48]},
            },
        },
        tuner={
            "algorithm": "random",
            "max_trials": 4,
            "epochs": 40,
            "batch_size": 64,
            "patience": 8,
            "seed": 1,
        },
        parallel_trials=2,
    ),
    "tiny-default": Preset(image_size=32, test_split=0.25, images_per_class=8, budget_seconds=45),
    "cpu64-default": Preset(image_size=64, test_split=0.15, budget_seconds=20 * 60),
    "gpu192-default": Preset(image_size=192, test_split=0.15, budget_seconds=10 * 60),
    "digits-default": Preset(
        image_size=32,
        test_split=0.15,
        budget_seconds=5 * 60,
        data=DIGITS,
        data_command="python -m benchmarks.make_digits",
    ),
}


@dataclass
class Outcome:
    """What one benchmark run measured."""

    preset: str
    status: str
    image_size: int
    train_photos: int
    validation_photos: int
    test_photos: int
    trials: int
    epochs: list[int]
    validation_accuracy: float | None
    test_accuracy: float | None
    search_seconds: float
    wall_seconds: float
    #: The search's wall seconds as the service counts them against its budget (from its
    #: first start to its end, the export and test of its models included).
    service_wall_seconds: float | None
    precision: str | None
    platform: str | None
    best_hyperparameters: dict[str, Any] = field(default_factory=dict)
    budget_seconds: int | None = None
    #: Training seconds of every trial, and of the trials a pruner or the budget stopped.
    trial_seconds: float = 0.0
    stopped_trial_seconds: float = 0.0
    #: The final trainings of the best architectures, as the search recorded them.
    final_training: list[dict[str, Any]] = field(default_factory=list)
    baseline: Baseline | None = None


@dataclass
class Baseline:
    """The space's default architecture trained plainly for the budget, on the same photos."""

    test_accuracy: float | None
    epochs: int
    epoch_seconds: float
    probe_seconds: float
    train_seconds: float
    train_photos: int
    test_photos: int


def dataset_body(preset: Preset, data: Path) -> dict[str, Any]:
    """The ``dataset`` of every search of the preset: the same seed, so the same test photos."""
    return {
        "path": str(data),
        "image_size": preset.image_size,
        "test_split": preset.test_split,
        "max_images_per_class": preset.images_per_class,
        "seed": 0,
    }


def search_body(preset: Preset, data: Path) -> dict[str, Any]:
    """The body of ``POST /v1/searches``: with a budget, only the photos and the budget."""
    if preset.budget_seconds is not None:
        return {
            "dataset": dataset_body(preset, data),
            "budget": {"seconds": preset.budget_seconds},
        }
    return {
        "dataset": dataset_body(preset, data),
        "space": preset.space,
        "tuner": preset.tuner,
        "objective": "val_accuracy",
        "export_top_k": 1,
    }


def baseline_body(
    preset: Preset, data: Path, defaults: dict[str, Any], epochs: int
) -> dict[str, Any]:
    """A search that only trains the space's default architecture: every hyperparameter fixed
    at its default, one trial, no early stopping, nothing trained again at the end."""
    name, version = DEFAULT_SPACE
    return {
        "dataset": dataset_body(preset, data) | {"validation_split": BASELINE_VALIDATION_SPLIT},
        "space": {
            "name": name,
            "version": version,
            "hyperparameters": {key: {"fixed": value} for key, value in defaults.items()},
        },
        "tuner": {"algorithm": "random", "max_trials": 1, "epochs": epochs, "patience": 0},
        "export_top_k": 1,
        "final_top_k": 0,
    }


def space_defaults(service: Service) -> dict[str, Any]:
    """Each hyperparameter's default in the default space, as ``GET /v1/spaces`` gives it."""
    name, version = DEFAULT_SPACE
    spaces = service.client.get("/v1/spaces").json()["items"]
    [space] = [item for item in spaces if (item["name"], item["version"]) == (name, version)]
    return {item["name"]: item["default"] for item in space["hyperparameters"]}


def run_baseline(service: Service, preset: Preset, data: Path, budget_seconds: float) -> Baseline:
    """Train the default architecture plainly through the service for ``budget_seconds``.

    A probe of :data:`PROBE_EPOCHS` epochs times an epoch (its last one; the first also
    compiles), then the baseline trains as many epochs as fit the budget, less the one-off
    cost of the first epoch.
    """
    defaults = space_defaults(service)
    probe_started = time.perf_counter()
    probe = service.wait_for(
        submit_search(service, baseline_body(preset, data, defaults, PROBE_EPOCHS))
    )
    probe_seconds = time.perf_counter() - probe_started
    history = probe["best_trial"]["history"] if probe["best_trial"] else []
    if len(history) < PROBE_EPOCHS:
        raise RuntimeError(f"the baseline's probe did not train: {probe.get('error')}")
    epoch_seconds = history[-1]["epoch_seconds"]
    first_epoch_extra = max(history[0]["epoch_seconds"] - epoch_seconds, 0.0)
    epochs = min(max(int((budget_seconds - first_epoch_extra) // epoch_seconds), 1), MOST_EPOCHS)
    started = time.perf_counter()
    search_id = submit_search(service, baseline_body(preset, data, defaults, epochs))
    baseline = service.wait_for(search_id)
    train_seconds = time.perf_counter() - started
    models = service.client.get(f"/v1/searches/{search_id}/models").json()["models"]
    photos = baseline.get("dataset") or {}
    return Baseline(
        test_accuracy=models[0]["test_accuracy"] if models else None,
        epochs=epochs,
        epoch_seconds=round(epoch_seconds, 2),
        probe_seconds=round(probe_seconds, 1),
        train_seconds=round(train_seconds, 1),
        train_photos=photos.get("train_images", 0),
        test_photos=photos.get("test_images", 0),
    )


def submit_search(service: Service, body: dict[str, Any]) -> str:
    """The id of the submitted search; a refused body is an error that shows the refusal."""
    response = service.client.post("/v1/searches", json=body)
    if response.status_code != 201:
        raise SystemExit(
            f"the service refused the search ({response.status_code}): {response.text}"
        )
    return response.json()["id"]


def run(preset_name: str, data: Path) -> Outcome:
    """Search through the service; the best model's score on the held-out photos (and, for a
    preset with a budget, the baseline's on the same photos)."""
    preset = PRESETS[preset_name]
    started = time.perf_counter()
    with running_service(
        data, parallel_trials=preset.parallel_trials, limit_epochs=MOST_EPOCHS
    ) as service:
        service.start_worker()
        search_started = time.perf_counter()
        search_id = submit_search(service, search_body(preset, data))
        search = service.wait_for(search_id)
        search_seconds = time.perf_counter() - search_started
        trials = service.client.get(f"/v1/searches/{search_id}/leaderboard").json()["trials"]
        models = service.client.get(f"/v1/searches/{search_id}/models").json()["models"]
        baseline = (
            None
            if preset.budget_seconds is None
            else run_baseline(service, preset, data, preset.budget_seconds)
        )
    best = trials[0] if trials and trials[0]["rank"] == 1 else {}
    photos = search.get("dataset") or {}
    status = search["status"]
    return Outcome(
        preset=preset_name,
        status=status if status == "succeeded" else f"{status}: {search.get('error')}",
        image_size=preset.image_size,
        train_photos=photos.get("train_images", 0),
        validation_photos=photos.get("validation_images", 0),
        test_photos=photos.get("test_images", 0),
        trials=len(trials),
        epochs=[trial["epochs"] for trial in trials],
        validation_accuracy=best.get("score"),
        test_accuracy=models[0]["test_accuracy"] if models else None,
        search_seconds=round(search_seconds, 1),
        wall_seconds=round(time.perf_counter() - started, 1),
        service_wall_seconds=search.get("wall_seconds"),
        precision=search.get("precision"),
        platform=(search.get("accelerator") or {}).get("platform"),
        best_hyperparameters=best.get("hyperparameters", {}),
        budget_seconds=preset.budget_seconds,
        trial_seconds=round(sum(trial["seconds"] for trial in trials), 1),
        # ``stop_reason``: a pruner's or the budget's, on the trials they stopped.
        stopped_trial_seconds=round(
            sum(trial["seconds"] for trial in trials if trial.get("stop_reason")), 1
        ),
        final_training=search.get("final_training", []),
        baseline=baseline,
    )


def preset_data(preset: Preset, data: Path | None) -> Path:
    """The folder to search: ``data`` if given, else the preset's, which must exist."""
    if data is not None:
        return data.resolve()
    if not preset.data.is_dir():
        build = f"; build it first: {preset.data_command}" if preset.data_command else ""
        raise SystemExit(f"no data at {preset.data}{build}")
    return preset.data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu64")
    parser.add_argument(
        "--data", type=Path, help="folder of class subfolders (default: the preset's)"
    )
    parser.add_argument("--json", type=Path, help="also write the outcome here")
    args = parser.parse_args(argv)
    outcome = run(args.preset, preset_data(PRESETS[args.preset], args.data))
    print(json.dumps(asdict(outcome), indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(outcome), indent=2))
    print(
        f"{outcome.preset}: test accuracy {outcome.test_accuracy}, validation accuracy "
        f"{outcome.validation_accuracy}, {outcome.trials} trials x epochs {outcome.epochs}, "
        f"search {outcome.search_seconds} s ({outcome.service_wall_seconds} s counted against "
        f"a budget of {outcome.budget_seconds} s), wall {outcome.wall_seconds} s"
    )
    if outcome.baseline is not None:
        baseline = outcome.baseline
        print(
            f"baseline (the default architecture, {baseline.epochs} epochs): test accuracy "
            f"{baseline.test_accuracy}, {baseline.train_seconds} s "
            f"(+ {baseline.probe_seconds} s timing {PROBE_EPOCHS} epochs)"
        )
    return 0 if outcome.test_accuracy is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
