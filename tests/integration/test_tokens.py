"""Tokens in the store and through ``nas token``: made once, kept as hashes, revoked for good;
the owner column that migration 0002 adds; the per-owner queue cap under concurrency."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from nas.cli.launcher import NAS
from nas.core.store import QueueFullError, Store, create_store, migrate
from nas.core.tokens import find_active_token, hash_token, issue_token, token_id_of, valid_owner
from tests.support.owners import secret_part


def token_table(store: Store) -> list[dict]:
    with store.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(text("SELECT * FROM tokens"))]


def test_a_token_is_kept_only_as_its_hash(store: Store) -> None:
    issued = issue_token(store, "alice", admin=True)

    (row,) = token_table(store)
    assert row["hash"] == hashlib.sha256(issued.secret.encode()).hexdigest()
    assert all(issued.secret not in str(value) for value in row.values())
    assert secret_part(issued.secret) not in str(row)
    assert (row["id"], row["owner"], bool(row["admin"])) == (issued.record.id, "alice", True)
    assert issued.secret not in repr(issued)
    assert find_active_token(store, issued.secret) == issued.record


def test_only_the_exact_live_token_is_recognised(store: Store) -> None:
    issued = issue_token(store, "alice")
    other = issue_token(store, "bob")
    token_id = issued.record.id
    forged = [
        issued.secret[:-1] + ("A" if issued.secret[-1] != "A" else "B"),
        f"nas_{token_id}_{other.secret.rsplit('_', 1)[1]}",  # bob's secret under alice's id
        issued.secret + "\n",
        issued.secret.upper(),
        hash_token(issued.secret),
        token_id,
        "",
    ]

    assert [find_active_token(store, token) for token in forged] == [None] * len(forged)
    assert store.get_active_token(token_id, hash_token(other.secret)) is None

    first = store.revoke_token(token_id)
    again = store.revoke_token(token_id)

    assert find_active_token(store, issued.secret) is None
    assert first is not None and again is not None and first.revoked_at == again.revoked_at
    assert find_active_token(store, other.secret) == other.record
    assert store.revoke_token("0" * 16) is None


def test_tokens_are_random_and_well_formed(store: Store) -> None:
    secrets = {issue_token(store, "alice").secret for _ in range(20)}

    assert len(secrets) == 20
    assert all(token_id_of(secret) is not None and len(secret) == 64 for secret in secrets)
    assert len({token.id for token in store.list_tokens()}) == 20


@pytest.mark.parametrize(
    ("owner", "valid"),
    [
        ("alice", True),
        ("ml-team.eu@corp", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        ("-alice", False),
        ("alice\n", False),
        ("alice bob", False),
        ("ali/ce", False),
        ("ålice", False),
    ],
)
def test_owner_names(store: Store, owner: str, valid: bool) -> None:
    assert valid_owner(owner) is valid
    if not valid:
        with pytest.raises(ValueError, match="owner must match"):
            issue_token(store, owner)


def test_the_queue_cap_holds_under_concurrent_submissions(store: Store) -> None:
    issue_token(store, "alice")
    url = store.engine.url.render_as_string(hide_password=False)
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def submit() -> None:
        own_store = create_store(url)  # one engine per thread, like separate API processes
        start.wait()
        try:
            own_store.create_search({"objective": "val_accuracy"}, 1, owner="alice", max_queued=3)
            outcomes.append("queued")
        except QueueFullError:
            outcomes.append("refused")
        finally:
            own_store.dispose()

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(outcomes) == ["queued"] * 3 + ["refused"] * 5
    assert store.list_searches(limit=10, offset=0, owner="alice").total == 3
    store.create_search({"objective": "val_accuracy"}, 1, owner="bob", max_queued=3)


# Migration 0002 ------------------------------------------------------------------------------


@pytest.fixture
def store_at_0001(database_url: str) -> Iterator[Store]:
    store = create_store(database_url)
    migrate(store.engine, "0001")
    yield store
    store.dispose()


def test_searches_from_before_tokens_belong_to_legacy(store_at_0001: Store) -> None:
    with store_at_0001.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO searches (id, status, spec, trials_planned, created_at, attempt, "
                "cancel_requested) VALUES (:id, 'queued', '{}', 1, CURRENT_TIMESTAMP, 0, false)"
            ),
            {"id": "a" * 32},
        )

    migrate(store_at_0001.engine)

    search = store_at_0001.get_search("a" * 32)
    assert search is not None and search.owner == "legacy"
    assert store_at_0001.list_searches(limit=10, offset=0, owner="legacy").total == 1
    assert store_at_0001.list_searches(limit=10, offset=0, owner="alice").total == 0
    with pytest.raises(IntegrityError), store_at_0001.engine.begin() as connection:
        connection.execute(  # no default owner is left for new rows
            text(
                "INSERT INTO searches (id, status, spec, trials_planned, created_at, attempt, "
                "cancel_requested) VALUES (:id, 'queued', '{}', 1, CURRENT_TIMESTAMP, 0, false)"
            ),
            {"id": "b" * 32},
        )


# ``nas token`` as real processes --------------------------------------------------------------


def nas(database_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NAS_DATABASE_URL": database_url, "NAS_ARTIFACTS_DIR": str(tmp_path)}
    return subprocess.run(
        [NAS, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_token_commands(database_url: str, store: Store, tmp_path: Path) -> None:
    created = nas(database_url, tmp_path, "token", "create", "--owner", "alice")
    admin = nas(database_url, tmp_path, "token", "create", "--owner", "ops", "--admin")
    assert created.returncode == admin.returncode == 0, created.stderr + admin.stderr
    token, admin_token = created.stdout.strip(), admin.stdout.strip()
    token_id = token_id_of(token)
    assert token_id is not None and created.stdout == token + "\n"
    assert f"token {token_id} for alice created" in created.stderr
    assert "shown only this once" in created.stderr
    assert find_active_token(store, token) is not None

    listed = nas(database_url, tmp_path, "token", "list")
    assert listed.returncode == 0, listed.stderr
    assert token_id in listed.stdout and token_id_of(admin_token) in listed.stdout
    for secret in (token, admin_token):
        assert secret not in listed.stdout and secret_part(secret) not in listed.stdout
        assert hash_token(secret) not in listed.stdout
    (ops_line,) = [line for line in listed.stdout.splitlines() if "ops" in line]
    assert "yes" in ops_line

    by_id = nas(database_url, tmp_path, "token", "revoke", token_id)
    by_token = nas(database_url, tmp_path, "token", "revoke", admin_token)
    unknown = nas(database_url, tmp_path, "token", "revoke", "f" * 16)

    assert (by_id.returncode, by_token.returncode, unknown.returncode) == (0, 0, 1)
    assert f"token {token_id} of alice revoked" in by_id.stdout
    assert admin_token not in by_token.stdout + by_token.stderr
    assert find_active_token(store, token) is None
    assert find_active_token(store, admin_token) is None
    assert all(token.revoked_at is not None for token in store.list_tokens())


def test_token_commands_refuse_bad_owners_and_unmigrated_databases(
    database_url: str, tmp_path: Path
) -> None:
    unmigrated = nas(database_url, tmp_path, "token", "create", "--owner", "alice")
    assert unmigrated.returncode == 2 and "nas migrate" in unmigrated.stderr

    migrate_store = create_store(database_url)
    migrate(migrate_store.engine)
    migrate_store.dispose()
    bad_owner = nas(database_url, tmp_path, "token", "create", "--owner", "../../etc")
    assert bad_owner.returncode == 2 and "--owner" in bad_owner.stderr
