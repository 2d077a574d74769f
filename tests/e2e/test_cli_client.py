"""The ``nas`` client commands, run as the real executable against a live ``nas serve`` and a
real ``nas worker`` training tiny searches on real photos; and, without a worker, against
queued searches of each kind of dataset and a large seeded one."""

from __future__ import annotations

import json
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from nas.cli.console import describe_architecture
from nas.cli.launcher import NAS_COMMAND, settings_env, start_nas, stop_process
from nas.core.ports import free_port
from nas.core.settings import Settings
from nas.core.store import Store, create_store, migrate
from tests.support.live import cli_token, live_api
from tests.support.seeding import seed_finished_search
from tests.support.tfrecord_shards import write_shards

pytestmark = pytest.mark.slow

SEARCH_ID = "0123456789abcdef0123456789abcdef"


@dataclass(frozen=True)
class Service:
    """A live API and worker; ``nas(...)`` runs the client against them as the owner."""

    url: str
    token: str
    settings: Settings
    data: Path

    def nas(
        self,
        *args: str,
        token: str | None = None,
        url: str | None = None,
        timeout: float = 120,
        columns: str | None = "200",
    ) -> subprocess.CompletedProcess[str]:
        """``nas ARGS`` with its stdout and stderr to pipes; ``columns=None`` sets no COLUMNS."""
        env = settings_env(self.settings) | {
            "NAS_URL": url or self.url,
            "NAS_TOKEN": self.token if token is None else token,
        }
        env.pop("COLUMNS", None)
        if columns is not None:
            env["COLUMNS"] = columns
        return subprocess.run(
            [*NAS_COMMAND, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def spec(self, **tuner: int) -> dict:
        return {
            "dataset": {"path": str(self.data), "image_size": 16, "max_images_per_class": 8},
            "space": {"min_conv_blocks": 1, "max_conv_blocks": 2, "filters": [8, 16]},
            "tuner": {"max_trials": 2, "epochs": 2, "batch_size": 8, "seed": 3} | tuner,
            "export_top_k": 1,
        }


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Iterator[Service]:
    base = tmp_path_factory.mktemp("cli")
    settings = Settings(
        database_url=f"sqlite:///{base / 'nas.db'}",
        artifacts_dir=base / "artifacts",
        cache_dir=base / "cache",
        data_roots=[data_root],
        heartbeat_seconds=1.0,
        lease_seconds=10.0,
        poll_interval_seconds=0.2,
        backend="tensorflow",
    )
    store = create_store(settings.database_url)
    migrate(store.engine)
    store.dispose()
    token = cli_token(settings, "cli-user")
    logs = base / "logs"
    with live_api(settings, logs, token) as api:
        worker = start_nas(["worker"], settings_env(settings), logs / "worker.log")
        try:
            yield Service(str(api.base_url), token, settings, data_root / "flowers")
        finally:
            stop_process(worker)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}{result.stdout}"
    return result.stdout


def one_clean_error(result: subprocess.CompletedProcess[str]) -> str:
    """The stderr of a command that failed as the CLI promises: exit 1, one line, no trace."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_submit_watch_leaderboard_download(service: Service, tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(service.spec()))
    search_id = ok(service.nas("submit", str(spec_file))).strip()
    assert len(search_id) == 32 and int(search_id, 16) >= 0

    watched = service.nas("watch", search_id, "--interval", "0.5", timeout=600)
    out = ok(watched)
    assert f"search {search_id} succeeded: 2/2 trials, best val_accuracy 0." in out
    assert "2/2" in out and "elapsed" in out

    table = ok(service.nas("leaderboard", search_id))
    assert "Leaderboard (val_accuracy)" in table
    rows = [line for line in table.splitlines() if "completed" in line]
    assert len(rows) == 2, table
    board = json.loads(ok(service.nas("leaderboard", search_id, "--json")))
    assert board["search_id"] == search_id and len(board["trials"]) == 2
    assert [trial["rank"] for trial in board["trials"]] == [1, 2]
    best_trial = board["trials"][0]
    assert best_trial["trial_id"] in rows[0] and f"{best_trial['score']:.4f}" in rows[0]
    top = json.loads(ok(service.nas("leaderboard", search_id, "--json", "--top", "1")))
    assert top["trials"] == board["trials"][:1]

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    tarball = Path(ok(service.nas("download", search_id, "--output", str(downloads))).strip())
    assert tarball == downloads / f"{search_id}-rank1-savedmodel.tar.gz"
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    assert any(name.endswith("saved_model.pb") for name in names), names
    keras_file = tmp_path / "best.keras"
    printed = ok(
        service.nas(
            "download", search_id, "--rank", "1", "--format", "keras", "--output", str(keras_file)
        )
    )
    assert Path(printed.strip()) == keras_file
    with zipfile.ZipFile(keras_file) as archive:
        assert {"config.json", "model.weights.h5"} <= set(archive.namelist())
    assert sorted(path.name for path in downloads.iterdir()) == [tarball.name]  # no .part left

    status = ok(service.nas("status", search_id))
    assert "succeeded" in status and "2/2" in status
    assert f"{best_trial['score']:.4f} (trial {best_trial['trial_id']})" in status
    listing = ok(service.nas("status"))
    assert search_id in listing and "succeeded" in listing

    # Each trial logged to TensorBoard in a folder of its own, readable by TensorBoard.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    logdir = service.settings.artifacts_dir / search_id / "tensorboard"
    trial_dirs = sorted(path.name for path in logdir.iterdir())
    assert trial_dirs == sorted(trial["trial_id"] for trial in board["trials"])
    validation = next((logdir / best_trial["trial_id"]).rglob("validation"))
    events = EventAccumulator(str(validation), size_guidance={"tensors": 0}).Reload()
    accuracy = events.Tensors("epoch_accuracy")
    assert [event.step for event in accuracy] == [0, 1]
    history = [epoch["val_accuracy"] for epoch in best_trial["history"]]
    logged = [float(make_ndarray(event.tensor_proto)) for event in accuracy]
    assert logged == pytest.approx(history, abs=1e-6)


def test_submit_yaml_idempotent_then_cancel(service: Service, tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(service.spec(max_trials=20, epochs=20)))
    first = ok(service.nas("submit", str(spec_file), "--idempotency-key", "once")).strip()
    again = ok(service.nas("submit", str(spec_file), "--idempotency-key", "once")).strip()
    assert again == first

    cancelled = ok(service.nas("cancel", first))
    assert cancelled.strip() in {
        f"search {first} cancelled",
        f"search {first} stops at the next epoch",
    }
    watched = service.nas("watch", first, "--interval", "0.5", timeout=300)
    assert watched.returncode == 2, watched.stderr
    assert f"search {first} cancelled" in watched.stdout
    assert "cancelled" in ok(service.nas("status", first))
    refused = one_clean_error(service.nas("cancel", SEARCH_ID))
    assert refused == f"error: no search {SEARCH_ID} (404)"


def test_errors_are_one_clean_line(service: Service, tmp_path: Path) -> None:
    bad_token = one_clean_error(service.nas("status", token="nas_0000_wrong"))
    assert "token" in bad_token and "401" in bad_token
    assert "nas_0000_wrong" not in bad_token

    port = free_port()
    unreachable = one_clean_error(service.nas("status", url=f"http://127.0.0.1:{port}"))
    assert f"unreachable at http://127.0.0.1:{port}" in unreachable

    spec = service.spec()
    spec["dataset"]["image_size"] = 8
    spec_file = tmp_path / "small.json"
    spec_file.write_text(json.dumps(spec))
    invalid = one_clean_error(service.nas("submit", str(spec_file)))
    assert invalid.startswith("error: invalid request: dataset.image_size: ")
    assert "16" in invalid and invalid.endswith("(422)")

    missing = one_clean_error(service.nas("leaderboard", SEARCH_ID))
    assert missing == f"error: no search {SEARCH_ID} (404)"

    broken = tmp_path / "broken.yaml"
    broken.write_text("dataset: [unclosed\n")
    assert "is not valid YAML" in one_clean_error(service.nas("submit", str(broken)))

    no_token = service.nas("status", token="")
    assert one_clean_error(no_token) == "error: no API token: pass --token or set NAS_TOKEN"


@pytest.fixture
def idle_service(settings: Settings, store: Store, tmp_path: Path) -> Iterator[Service]:
    """A live API and no worker: what is submitted stays queued."""
    token = cli_token(settings, "cli-user")
    with live_api(settings, tmp_path / "logs", token) as api:
        yield Service(str(api.base_url), token, settings, settings.data_roots[0] / "flowers")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_status_names_every_kind_of_dataset(idle_service: Service, tmp_path: Path) -> None:
    root = idle_service.settings.data_roots[0]
    write_shards(idle_service.data, root / "cli-shards")
    glob = str(root / "cli-shards" / "flowers-*-of-02.tfrec")
    sources = {
        "flowers": {"path": str(idle_service.data)},
        "tf_flowers": {"name": "tf_flowers"},
        "flowers-*-of-02.tfrec": {"tfrecords": glob},
    }
    where = {"flowers": str(idle_service.data), "tf_flowers": "tf_flowers"}
    where["flowers-*-of-02.tfrec"] = glob
    ids = {}
    for name, source in sources.items():
        spec = idle_service.spec() | {"dataset": {**source, "image_size": 16}}
        spec_file = tmp_path / f"{len(ids)}.json"
        spec_file.write_text(json.dumps(spec))
        ids[name] = ok(idle_service.nas("submit", str(spec_file))).strip()

    for name, search_id in ids.items():
        lines = ok(idle_service.nas("status", search_id)).splitlines()
        assert f"dataset {where[name]}" in [" ".join(line.split()) for line in lines]
    listing = ok(idle_service.nas("status")).splitlines()
    for name, search_id in ids.items():
        (row,) = [line for line in listing if search_id in line]
        assert f" {name} " in row and "queued" in row


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_tables_piped_to_a_file_are_whole(idle_service: Service, store: Store) -> None:
    """Off a terminal (no COLUMNS either, as ``make run > file``), no cell is cut."""
    search_id = seed_finished_search(
        store, owner="cli-user", dataset_path=str(idle_service.data), trials=12, epochs=1
    )
    board = json.loads(ok(idle_service.nas("leaderboard", search_id, "--json")))
    table = ok(idle_service.nas("leaderboard", search_id, columns=None))
    listing = ok(idle_service.nas("status", columns=None))
    assert "…" not in table + listing
    for trial in board["trials"]:
        (row,) = [line for line in table.splitlines() if f" {trial['trial_id']} " in line]
        cells = [cell.strip() for cell in row.split("│")[1:-1]]
        assert cells == [
            str(trial["rank"]),
            trial["trial_id"],
            "completed",
            f"{trial['score']:.4f}",
            "-",
            "-",
            f"{trial['params']:,}",
            "1",
            f"{trial['seconds']:.1f}",
            describe_architecture(trial["hyperparameters"]),
            "",  # stopped early: no pruner ran
        ]
    assert search_id in listing
