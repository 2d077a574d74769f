"""How good a model a search through the service finds, on photos no trial saw.

The photos are split once, stratified and seeded, into a training folder (the search's
dataset; the service splits it again into train and validation) and a held-out test folder.
The search runs through a throwaway service (``benchmarks.harness``); the best model's
``.keras`` file is downloaded and scored on the test photos here, decoded the service's way.

    python -m benchmarks.search_quality --preset cpu64        # 64 px, for a 2-core CPU
    python -m benchmarks.search_quality --preset gpu192       # 192 px, for one H100
    python -m benchmarks.search_quality --preset tiny --data ../shared/datasets/flowers

Prints the best trial's validation accuracy, the best model's test accuracy, the trials and
epochs run and the wall time; ``--json`` also writes them to a file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import FLOWERS, Service, running_service
from worker.datasets import load_images, scan_folder, stratified_split

TEST_SEED = 2026


@dataclass(frozen=True)
class Preset:
    """A benchmark size: photos, held-out share, and the search's space and tuner."""

    image_size: int
    test_fraction: float
    tuner: dict[str, Any]
    space: dict[str, Any]
    images_per_class: int | None = None
    parallel_trials: int = 1


# Version 2 of the codelab space around its defaults: what trains well on small data is
# pinned (batch norm, augmentation, cosine decay, label smoothing), the rest searched.
GOOD_V2 = {
    "conv_blocks": {"fixed": 4},
    "base_filters": {"fixed": 32},
    "filter_growth": {"fixed": 2.0},
    "batch_norm": {"fixed": True},
    "one_by_one_conv": {"fixed": False},
    "downsampling": {"fixed": "max_pool"},
    "head": {"values": ["gap", "gap_dense"]},
    "dense_units": {"fixed": 128},
    "dropout": {"values": [0.2, 0.3]},
    "augmentation": {"fixed": True},
    "learning_rate": {"min": 1e-3, "max": 3e-3},
    "lr_schedule": {"fixed": "cosine"},
    "label_smoothing": {"fixed": 0.1},
}

PRESETS = {
    "tiny": Preset(
        image_size=32,
        test_fraction=0.25,
        images_per_class=8,
        space={"version": 2, "hyperparameters": {"conv_blocks": {"fixed": 2}}},
        tuner={"algorithm": "random", "max_trials": 1, "epochs": 1, "batch_size": 8, "seed": 1},
    ),
    "cpu64": Preset(
        image_size=64,
        test_fraction=0.15,
        space={"version": 2, "hyperparameters": GOOD_V2},
        tuner={
            "algorithm": "random",
            "max_trials": 3,
            "epochs": 20,
            "batch_size": 32,
            "patience": 6,
            "seed": 1,
        },
    ),
    "gpu192": Preset(
        image_size=192,
        test_fraction=0.15,
        space={
            "version": 2,
            "hyperparameters": {
                **GOOD_V2,
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


def split_photos(source: Path, destination: Path, preset: Preset) -> tuple[Path, Path]:
    """Copy ``source``'s photos into ``destination/train`` and a held-out ``destination/test``."""
    scan = scan_folder(source, preset.images_per_class)
    labels = np.asarray(scan.labels)
    train, test = stratified_split(labels, preset.test_fraction, TEST_SEED)
    for part, indices in (("train", train), ("test", test)):
        for index in indices:
            file = scan.files[index]
            target = destination / part / scan.class_names[labels[index]] / file.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, target)
    return destination / "train", destination / "test"


def search_body(preset: Preset, train: Path) -> dict[str, Any]:
    """The body of ``POST /v1/searches``."""
    return {
        # Once the service takes dataset.test_path (issue 3's data side), adding
        # "test_path": str(test) here makes it score every exported model on the same photos.
        "dataset": {"path": str(train), "image_size": preset.image_size, "seed": 0},
        "space": preset.space,
        "tuner": preset.tuner,
        "objective": "val_accuracy",
        "export_top_k": 1,
    }


def test_accuracy(service: Service, search_id: str, test: Path, image_size: int) -> float:
    """The best exported model's accuracy on the held-out photos."""
    import keras

    response = service.client.get(f"/v1/searches/{search_id}/models/1/keras")
    response.raise_for_status()
    model_file = service.folder / "best.keras"
    model_file.write_bytes(response.content)
    model = keras.saving.load_model(model_file)
    photos = load_images(scan_folder(test), image_size, cache_dir=None)
    probabilities = model.predict(photos.images.astype("float32"), batch_size=64, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=-1) == photos.labels))


def run(preset_name: str, data: Path) -> Outcome:
    """Split, search through the service, score the best model on the held-out photos."""
    preset = PRESETS[preset_name]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nas-quality-") as temp:
        train, test = split_photos(data, Path(temp), preset)
        with running_service(Path(temp), parallel_trials=preset.parallel_trials) as service:
            service.start_worker()
            search_started = time.perf_counter()
            search_id = service.submit(search_body(preset, train))
            search = service.wait_for(search_id)
            search_seconds = time.perf_counter() - search_started
            board = service.client.get(f"/v1/searches/{search_id}/leaderboard").json()
            trials = board["trials"]
            succeeded = search["status"] == "succeeded"
            accuracy = (
                test_accuracy(service, search_id, test, preset.image_size) if succeeded else None
            )
        best = trials[0] if trials and trials[0]["rank"] == 1 else {}
        return Outcome(
            preset=preset_name,
            status=search["status"] if succeeded else f"{search['status']}: {search.get('error')}",
            image_size=preset.image_size,
            train_photos=sum(1 for _ in train.rglob("*.jpg")),
            test_photos=sum(1 for _ in test.rglob("*.jpg")),
            trials=len(trials),
            epochs=[trial["epochs"] for trial in trials],
            validation_accuracy=best.get("score"),
            test_accuracy=accuracy,
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
