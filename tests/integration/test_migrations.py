"""Schema migrations and the refusal to run on a database that does not match the code."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from nas.api import create_app
from nas.core.settings import Settings
from nas.core.store import (
    DataStepState,
    SchemaMismatchError,
    Store,
    create_store,
    ensure_schema_current,
    migrate,
    migrations,
)
from nas.core.store.schema import current_revision, head_revision
from tests.support.owners import bearer

NAS = Path(sys.executable).with_name("nas")
CLI_TIMEOUT = 60.0
TABLES = {
    "searches",
    "search_attempts",
    "search_data_steps",
    "trials",
    "exported_models",
    "workers",
    "tokens",
}


@pytest.fixture
def bare_store(database_url: str) -> Iterator[Store]:
    """A store on a database that was never migrated."""
    store = create_store(database_url)
    yield store
    store.dispose()


def mismatch(store: Store) -> str:
    """The message of the SchemaMismatchError that both the check and the API raise."""
    with pytest.raises(SchemaMismatchError) as raised:
        ensure_schema_current(store.engine)
    with pytest.raises(SchemaMismatchError) as refused:
        create_app(settings_of(store), store)
    assert str(refused.value) == str(raised.value)
    return str(raised.value)


def settings_of(store: Store) -> Settings:
    return Settings(database_url=store.engine.url.render_as_string(hide_password=False))


def alembic_config() -> Config:
    """Alembic's configuration for this repository's migrations, as ``migrate`` builds it."""
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return config


def downgrade(store: Store, revision: str) -> None:
    """``alembic downgrade`` on the store's engine, configured the way ``migrate`` is."""
    config = alembic_config()
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def tables(store: Store) -> set[str]:
    return set(inspect(store.engine).get_table_names())


def test_unmigrated_database_is_refused(bare_store: Store) -> None:
    assert current_revision(bare_store.engine) is None

    message = mismatch(bare_store)

    assert "nas migrate" in message
    assert "no schema" in message
    assert tables(bare_store) == set()


def test_migrated_database_is_current(bare_store: Store) -> None:
    migrate(bare_store.engine)
    migrate(bare_store.engine)  # a second run has nothing to do

    ensure_schema_current(bare_store.engine)
    assert current_revision(bare_store.engine) == head_revision()
    assert tables(bare_store) >= TABLES
    assert create_app(settings_of(bare_store), bare_store).state.store is bare_store


def test_newer_schema_asks_to_upgrade_the_code(bare_store: Store) -> None:
    migrate(bare_store.engine)
    with bare_store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))

    message = mismatch(bare_store)

    assert "9999_future" in message
    assert "newer" in message
    assert "upgrade" in message
    assert "nas migrate" not in message


def test_older_schema_asks_to_migrate(bare_store: Store) -> None:
    first = ScriptDirectory.from_config(alembic_config()).get_base()
    assert first is not None
    if first == head_revision():
        pytest.skip("only one revision: no schema can be older than the code")
    migrate(bare_store.engine, first)

    message = mismatch(bare_store)

    assert "older" in message
    assert "nas migrate" in message
    migrate(bare_store.engine)
    ensure_schema_current(bare_store.engine)


def test_downgrade_to_base_and_upgrade_again(bare_store: Store) -> None:
    migrate(bare_store.engine)
    bare_store.create_search({"objective": "val_accuracy"}, trials_planned=1, owner="alice")

    downgrade(bare_store, "base")

    assert current_revision(bare_store.engine) is None
    assert tables(bare_store) & TABLES == set()
    assert "nas migrate" in mismatch(bare_store)

    migrate(bare_store.engine)

    ensure_schema_current(bare_store.engine)
    search = bare_store.create_search(
        {"objective": "val_loss"}, trials_planned=2, owner="alice"
    ).search
    page = bare_store.list_searches(limit=10, offset=0, owner=None)
    assert [item.id for item in page.items] == [search.id]


def test_revision_column_up_and_down(bare_store: Store) -> None:
    migrate(bare_store.engine, "0004_test_accuracy")
    with bare_store.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO searches (id, owner, status, spec, trials_planned, created_at, "
                "attempt, cancel_requested) VALUES ('a' || :pad, 'alice', 'queued', '{}', 1, "
                ":now, 0, false)"
            ),
            {"pad": "0" * 31, "now": "2026-12-01 00:00:00"},
        )

    migrate(bare_store.engine)

    columns = {column["name"] for column in inspect(bare_store.engine).get_columns("searches")}
    assert "revision" in columns
    revision = bare_store.get_revision("a" + "0" * 31)
    assert revision is not None and revision.revision == 0, "existing searches start at 0"

    downgrade(bare_store, "0004_test_accuracy")

    columns = {column["name"] for column in inspect(bare_store.engine).get_columns("searches")}
    assert "revision" not in columns
    assert current_revision(bare_store.engine) == "0004_test_accuracy"


def test_extensions_up_and_down(bare_store: Store) -> None:
    migrate(bare_store.engine, "0008_final_training")
    with bare_store.engine.begin() as connection:
        for pad, started in (("1", "2026-12-01 10:00:00"), ("2", None)):
            connection.execute(
                text(
                    "INSERT INTO searches (id, owner, status, spec, trials_planned, created_at, "
                    "started_at, attempt, cancel_requested) VALUES (:id, 'alice', 'running', "
                    "'{}', 1, :now, :started, 1, false)"
                ),
                {"id": pad * 32, "now": "2026-12-01 00:00:00", "started": started},
            )

    migrate(bare_store.engine)

    started = bare_store.get_search("1" * 32)
    never = bare_store.get_search("2" * 32)
    assert started is not None and never is not None
    assert started.resumed_at == started.started_at is not None, "its current run is its first"
    assert never.resumed_at is None
    assert started.extensions == never.extensions == ()

    downgrade(bare_store, "0008_final_training")

    columns = {column["name"] for column in inspect(bare_store.engine).get_columns("searches")}
    assert not {"resumed_at", "extensions"} & columns


def test_data_steps_up_and_down(bare_store: Store) -> None:
    migrate(bare_store.engine, "0010_extensions")
    with bare_store.engine.begin() as connection:
        for pad, status in (("1", "running"), ("2", "succeeded")):
            connection.execute(
                text(
                    "INSERT INTO searches (id, owner, status, spec, trials_planned, created_at, "
                    "attempt, cancel_requested) VALUES (:id, 'alice', :status, '{}', 1, :now, "
                    "0, false)"
                ),
                {"id": pad * 32, "status": status, "now": "2026-12-01 00:00:00"},
            )

    migrate(bare_store.engine)

    for search_id in ("1" * 32, "2" * 32):
        step = bare_store.get_data_step(search_id)
        assert step is not None, "every search has a data step"
        assert (step.state, step.token, step.holder) == (DataStepState.PENDING, 0, None)

    downgrade(bare_store, "0010_extensions")

    assert "search_data_steps" not in tables(bare_store)
    assert current_revision(bare_store.engine) == "0010_extensions"
    migrate(bare_store.engine)
    assert bare_store.get_data_step("1" * 32) is not None


def test_unreadable_notes_up_and_down(bare_store: Store) -> None:
    migrate(bare_store.engine, "0011_data_step")
    with bare_store.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO searches (id, owner, status, spec, trials_planned, created_at, "
                "attempt, cancel_requested) VALUES (:id, 'alice', 'running', '{}', 1, :now, "
                "0, false)"
            ),
            {"id": "1" * 32, "now": "2026-12-01 00:00:00"},
        )
        connection.execute(
            text(
                "INSERT INTO search_data_steps (search_id, state, token, lost_leases, "
                "images_decoded, images_reached) VALUES (:id, 'pending', 0, 0, 0, 0)"
            ),
            {"id": "1" * 32},
        )

    migrate(bare_store.engine)

    step = bare_store.get_data_step("1" * 32)
    assert step is not None
    assert (step.state, step.unreadable_by, step.unreadable_since) == (
        DataStepState.PENDING,
        (),
        None,
    ), "no worker noted anything yet"

    downgrade(bare_store, "0011_data_step")

    columns = {c["name"] for c in inspect(bare_store.engine).get_columns("search_data_steps")}
    assert not {"unreadable_by", "unreadable_since"} & columns
    migrate(bare_store.engine)
    assert bare_store.get_data_step("1" * 32) is not None


# The ``nas`` command, as real processes ------------------------------------------------------


def nas_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a ``nas`` process on ``database_url``, writing under ``tmp_path``."""
    return {
        **os.environ,
        "NAS_DATABASE_URL": database_url,
        "NAS_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "NAS_CACHE_DIR": str(tmp_path / "cache"),
        "NAS_DATA_ROOTS": str(tmp_path),
        "NAS_POLL_INTERVAL_SECONDS": "0.2",
    }


def nas(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NAS), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(server: subprocess.Popen[str], http: httpx.Client) -> httpx.Response:
    """The first answer of ``/healthz`` from ``server``, which must stay up meanwhile."""
    deadline = time.monotonic() + CLI_TIMEOUT
    while time.monotonic() < deadline:
        assert server.poll() is None, server.communicate()
        try:
            return http.get("/healthz")
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"the API did not answer within {CLI_TIMEOUT} s")


@pytest.mark.parametrize(
    "command_args",
    [("serve", "--port", "{port}"), ("worker", "--exit-when-idle")],
    ids=["serve", "worker"],
)
def test_cli_refuses_unmigrated_database(
    database_url: str, tmp_path: Path, command_args: tuple[str, ...]
) -> None:
    args = [arg.replace("{port}", str(free_port())) for arg in command_args]

    refused = nas(nas_env(database_url, tmp_path), tmp_path, *args)

    assert refused.returncode == 2, refused.stderr
    assert "nas migrate" in refused.stderr


def test_cli_migrate_then_serve_and_work(database_url: str, tmp_path: Path) -> None:
    env = nas_env(database_url, tmp_path)

    migrated = nas(env, tmp_path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "nas token create --owner" in migrated.stdout
    created = nas(env, tmp_path, "token", "create", "--owner", "ops", "--admin")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    worked = nas(env, tmp_path, "worker", "--exit-when-idle")
    assert worked.returncode == 0, worked.stderr

    port = free_port()
    with (
        subprocess.Popen(
            [str(NAS), "serve", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        ) as server,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as http,
    ):
        try:
            health = wait_healthy(server, http)
            workers = http.get("/v1/workers", headers=bearer(token)).json()
        finally:
            server.terminate()
            server.communicate(timeout=CLI_TIMEOUT)
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    (worker,) = workers["items"]
    assert worker["stopped_at"] is not None
    assert (worker["slots"], worker["current_trials"]) == (1, [])
