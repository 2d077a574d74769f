"""The environment the launcher gives ``nas`` processes carries every setting: read back, it
makes the same Settings, and a real ``nas worker`` acts on a setting only it could get there."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from nas.cli.launcher import NAS_COMMAND, settings_env
from nas.core.ports import free_port
from nas.core.settings import Settings
from nas.core.specs import SearchSpec
from nas.core.store import SearchStatus, create_store, migrate
from tests.support.leases import finish_trials, join


def every_field_changed(tmp_path: Path) -> Settings:
    """Settings with each field away from its default (a new field must be added here)."""
    values = {
        "database_url": f"sqlite:///{tmp_path / 'other.db'}",
        "artifacts_dir": tmp_path / "artifacts",
        "cache_dir": tmp_path / "cache",
        "data_roots": [tmp_path / "photos", tmp_path / "more photos"],
        "data_buckets": ["one-bucket", "another_bucket"],
        "submit_scan_entries": 77,
        "tf_flowers_url": "http://127.0.0.1:9/flower_photos.tgz",
        "download_timeout_seconds": 7.25,
        "host": "0.0.0.0",
        "port": 8123,
        "api_threads": 5,
        "api_answer_cache_bytes": 12345,
        "header_timeout_seconds": 3.5,
        "max_connections": 17,
        "poll_interval_seconds": 0.3,
        "heartbeat_seconds": 1.5,
        "lease_seconds": 12.5,
        "max_attempts": 7,
        "cancel_grace_seconds": 0.1,
        "search_niceness": 3,
        "store_retry_seconds": 2.0,
        "backend": "jax",
        "parallel_trials": 3,
        "full_batches": False,
        "limit_body_bytes": 4096,
        "limit_max_trials": 9,
        "limit_epochs": 11,
        "limit_image_size": 96,
        "limit_batch_size": 16,
        "limit_classes": 12,
        "limit_image_pixels": 123456,
        "limit_max_params": 654321,
        "limit_max_flops": 7654321,
        "limit_queued_per_owner": 2,
        "rate_limit_per_minute": 33.5,
        "rate_limit_burst": 4,
        "auth_failures_per_minute": 6.5,
        "auth_failures_burst": 2,
    }
    assert set(values) == set(Settings.model_fields), "give every setting a value here"
    settings = Settings(**values)
    defaults = Settings()
    assert [n for n in values if getattr(settings, n) == getattr(defaults, n)] == []
    return settings


def test_every_setting_round_trips_through_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = every_field_changed(tmp_path)
    env = settings_env(settings)
    for name in [name for name in env if name.upper().startswith("NAS_")]:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings() == settings


def test_a_worker_gets_a_setting_only_the_environment_gives_it(
    tmp_path: Path, data_root: Path
) -> None:
    """max_attempts 1: a search whose finishing step's worker vanished on its first attempt
    fails at once, where the default (3) would have another worker take the step again."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'nas.db'}",
        artifacts_dir=tmp_path / "artifacts",
        cache_dir=tmp_path / "cache",
        data_roots=[data_root],
        # Were it run again, the download fails at once instead of reaching the internet.
        tf_flowers_url=f"http://127.0.0.1:{free_port()}/flower_photos.tgz",
        poll_interval_seconds=0.2,
        max_attempts=1,
    )
    store = create_store(settings.database_url)
    migrate(store.engine)
    spec = SearchSpec.model_validate({"dataset": {"name": "tf_flowers", "image_size": 32}})
    search_id = store.create_search(
        spec.model_dump(mode="json"), trials_planned=1, owner="ops"
    ).search.id
    finish_trials(store, join(store, "vanished-worker"), lease_seconds=0.001)

    worker = subprocess.run(
        [*NAS_COMMAND, "worker", "--exit-when-idle"],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr
    search = store.get_search(search_id)
    store.dispose()
    assert search is not None and search.status == SearchStatus.FAILED
    assert search.error == "the worker finishing the search stopped answering 1 times", (
        worker.stderr
    )
