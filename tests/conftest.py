"""Shared fixtures: a real database of each kind, real photos, a live API on real HTTP; and the
tier marker (unit, integration, e2e) of each test, from the folder it lies in."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from nas.api import create_app
from nas.core.settings import Settings
from nas.core.store import Store, create_store, migrate
from nas.core.tokens import issue_token
from tests.support.flowers import copy_flowers_slice
from tests.support.owners import OWNER, ClientFactory, bearer

POSTGRES_ADMIN_URL = os.environ.get(
    "NAS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
# CI sets it (.ci/run): there a missing server fails the PostgreSQL cases instead of skipping them.
POSTGRES_REQUIRED = os.environ.get("NAS_REQUIRE_POSTGRES") == "1"
TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, the folder under ``tests/`` it lies in."""
    folders = {Path(__file__).parent / tier: tier for tier in TIERS}
    for item in items:
        tier = next((folders[folder] for folder in item.path.parents if folder in folders), None)
        if tier is not None:
            item.add_marker(tier)


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_admin() -> str:
    """The maintenance URL of the test PostgreSQL server (``.ci/run`` starts it); without a
    server the test is skipped, or fails where NAS_REQUIRE_POSTGRES=1."""
    try:
        with psycopg.connect(_libpq(POSTGRES_ADMIN_URL), connect_timeout=5):
            pass
    except psycopg.OperationalError as error:
        reason = f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {error}"
        if POSTGRES_REQUIRED:
            pytest.fail(reason)
        pytest.skip(f"{reason}; set NAS_TEST_POSTGRES_URL to a server to run the PostgreSQL cases")
    return POSTGRES_ADMIN_URL


def create_postgres_database(admin_url: str) -> str:
    """A new empty database on the test server; returns its SQLAlchemy URL."""
    name = f"nas_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(admin_url), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(admin_url: str, url: str) -> None:
    name = make_url(url).database
    with psycopg.connect(_libpq(admin_url), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh database on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'nas.db'}"
        return
    admin = request.getfixturevalue("postgres_admin")
    url = create_postgres_database(admin)
    yield url
    drop_postgres_database(admin, url)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A migrated store on each kind of database."""
    store = create_store(database_url)
    migrate(store.engine)
    yield store
    store.dispose()


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding ``flowers``: 12 real photos of each of the 5 classes."""
    root = tmp_path_factory.mktemp("data")
    copy_flowers_slice(root / "flowers", per_class=12)
    return root


@pytest.fixture
def settings(tmp_path: Path, database_url: str, data_root: Path) -> Settings:
    return Settings(
        database_url=database_url,
        artifacts_dir=tmp_path / "artifacts",
        cache_dir=tmp_path / "cache",
        data_roots=[data_root],
        heartbeat_seconds=1.0,
        lease_seconds=10.0,
        poll_interval_seconds=0.2,
        backend="tensorflow",
    )


@pytest.fixture
def client(settings: Settings, store: Store) -> Iterator[TestClient]:
    """The API in-process, on the same store the test inspects, with a token of ``OWNER``."""
    token = issue_token(store, OWNER).secret
    with TestClient(create_app(settings, store), headers=bearer(token)) as test_client:
        yield test_client


@pytest.fixture
def client_as(client: TestClient, store: Store) -> Iterator[ClientFactory]:
    """``client_as(owner, admin=False)``: a client of the same app with a new token of
    ``owner``; ``client_as(None)`` sends no token."""
    made: list[TestClient] = []

    def make(owner: str | None, *, admin: bool = False) -> TestClient:
        headers = {} if owner is None else bearer(issue_token(store, owner, admin=admin).secret)
        made.append(TestClient(client.app, headers=headers))
        return made[-1]

    yield make
    for other in made:
        other.close()
