"""How good a model a search through the service finds, on photos no trial saw.

A throwaway service (``benchmarks.harness``) searches the photos with ``dataset.test_split``:
it holds out a stratified, seeded share of each class that no trial sees, and scores every
exported model on it after the search.

    python -m benchmarks.search_quality --preset cpu64        # 64 px, for a 2-core CPU
    python -m benchmarks.search_quality --preset gpu192       # 192 px, for one H100
    python -m benchmarks.search_quality --preset tiny --data ../shared/datasets/flowers

Prints the best model's test accuracy, the best trial's validation accuracy, the trials and
epochs run and the wall time; ``--json`` also writes them to a file.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import FLOWERS, running_service
from nas.core.spaces.codelab_v2 import SMALL_DATA_FOCUS


@dataclass(frozen=True)
class Preset:
    """A benchmark size: photos, held-out share, and the search's space and tuner."""

    image_size: int
    test_split: float
    tuner: dict[str, Any]
    space: dict[str, Any]
    images_per_class: int | None = None
    parallel_trials: int = 1


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
    precision: str | None
    platform: str | None
    best_hyperparameters: dict[str, Any] = field(default_factory=dict)


def search_body(preset: Preset, data: Path) -> dict[str, Any]:
    """The body of ``POST /v1/searches``."""
    return {
        "dataset": {
            "path": str(data),
            "image_size": preset.image_size,
            "test_split": preset.test_split,
            "max_images_per_class": preset.images_per_class,
            "seed": 0,
        },
        "space": preset.space,
        "tuner": preset.tuner,
        "objective": "val_accuracy",
        "export_top_k": 1,
    }


def run(preset_name: str, data: Path) -> Outcome:
    """Search through the service; the best model's score on the held-out photos."""
    preset = PRESETS[preset_name]
    started = time.perf_counter()
    with running_service(data, parallel_trials=preset.parallel_trials) as service:
        service.start_worker()
        search_started = time.perf_counter()
        search_id = service.submit(search_body(preset, data))
        search = service.wait_for(search_id)
        search_seconds = time.perf_counter() - search_started
        trials = service.client.get(f"/v1/searches/{search_id}/leaderboard").json()["trials"]
        models = service.client.get(f"/v1/searches/{search_id}/models").json()["models"]
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
        precision=search.get("precision"),
        platform=(search.get("accelerator") or {}).get("platform"),
        best_hyperparameters=best.get("hyperparameters", {}),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu64")
    parser.add_argument("--data", type=Path, default=FLOWERS, help="folder of class subfolders")
    parser.add_argument("--json", type=Path, help="also write the outcome here")
    args = parser.parse_args(argv)
    outcome = run(args.preset, args.data.resolve())
    print(json.dumps(asdict(outcome), indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(outcome), indent=2))
    print(
        f"{outcome.preset}: test accuracy {outcome.test_accuracy}, validation accuracy "
        f"{outcome.validation_accuracy}, {outcome.trials} trials x epochs {outcome.epochs}, "
        f"search {outcome.search_seconds} s, wall {outcome.wall_seconds} s"
    )
    return 0 if outcome.test_accuracy is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
