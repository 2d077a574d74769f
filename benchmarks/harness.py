"""A throwaway service (SQLite, API, workers) for benchmarks, in a temporary folder."""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from sqlalchemy.engine import make_url

from nas.cli.launcher import settings_env, start_nas, stop_process, wait_until
from nas.core.ports import free_port
from nas.core.settings import Settings
from nas.core.store import create_store, migrate
from nas.core.tokens import issue_token

#: The server ``postgres_database`` makes its databases on (the one the tests use).
POSTGRES_SERVER = os.environ.get(
    "NAS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
FLOWERS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "flowers"
#: Built by ``python -m benchmarks.make_digits``, never committed.
DIGITS = Path(__file__).resolve().parents[1] / "var" / "datasets" / "digits"


@dataclass
class Service:
    """A running API (and the workers started through it) on a fresh database.

    Their logs are ``api.log`` and ``worker0.log``, ``worker1.log``... in ``folder``.
    """

    settings: Settings
    client: httpx.Client
    folder: Path
    api: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_worker(
        self, *args: str, cpus: str | None = None, own_cache: bool = False, **settings: object
    ) -> subprocess.Popen[bytes]:
        """Start ``nas worker ARGS``: held to the CPUs ``cpus`` (``taskset -c``) if given,
        with a cache folder of its own if ``own_cache`` (as a worker on another host has),
        and with ``settings`` over the service's."""
        number = len(self.workers)
        if own_cache:
            settings["cache_dir"] = self.folder / f"cache{number}"
        env = settings_env(self.settings.model_copy(update=settings))
        if cpus is not None:
            # One core each: TensorFlow's thread pools are sized to it as well.
            env |= {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
        worker = start_nas(
            ["worker", *args],
            env,
            self.folder / f"worker{number}.log",
            prefix=() if cpus is None else ("taskset", "-c", cpus),
        )
        self.workers.append(worker)
        return worker

    def issue_tokens(self, count: int, owner: str = "benchmark") -> list[str]:
        """``count`` new tokens of ``owner`` (the owner of the searches submitted here)."""
        store = create_store(self.settings.database_url)
        try:
            return [issue_token(store, owner).secret for _ in range(count)]
        finally:
            store.dispose()

    def submit(self, body: dict) -> str:
        response = self.client.post("/v1/searches", json=body)
        response.raise_for_status()
        return response.json()["id"]

    def wait_for(self, search_id: str, timeout: float = 3600) -> dict:
        def finished() -> dict | None:
            search = self.client.get(f"/v1/searches/{search_id}").json()
            return search if search["status"] not in {"queued", "running"} else None

        return wait_until(finished, timeout, f"search {search_id}", interval=0.5)


@contextmanager
def postgres_database(server_url: str = POSTGRES_SERVER) -> Iterator[str]:
    """A new empty database on the PostgreSQL server at ``server_url``, dropped on exit; its
    SQLAlchemy URL."""
    name = f"nas_bench_{uuid.uuid4().hex[:12]}"
    admin = make_url(server_url).set(drivername="postgresql")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def running_service(
    data_dir: Path, database_url: str | None = None, **overrides: object
) -> Iterator[Service]:
    """API on a free port over a new SQLite file (or the empty database at
    ``database_url``); stops everything on exit."""
    with tempfile.TemporaryDirectory(prefix="nas-bench-") as temp:
        folder = Path(temp)
        settings = Settings(
            database_url=database_url or f"sqlite:///{folder / 'nas.db'}",
            artifacts_dir=folder / "artifacts",
            cache_dir=folder / "cache",
            data_roots=[data_dir.resolve()],
            port=free_port(),
            **overrides,  # type: ignore[arg-type]
        )
        store = create_store(settings.database_url)
        migrate(store.engine)
        # An admin token: benchmarks also watch /v1/workers.
        token = issue_token(store, "benchmark", admin=True).secret
        store.dispose()
        api = start_nas(
            ["serve", "--port", str(settings.port)], settings_env(settings), folder / "api.log"
        )
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{settings.port}",
            timeout=60,
            headers={"Authorization": f"Bearer {token}"},
        )
        service = Service(settings=settings, client=client, folder=folder, api=api)
        try:
            wait_until(lambda: _healthy(client), 60, "the API")
            yield service
        finally:
            client.close()
            for process in [*reversed(service.workers), api]:
                stop_process(process)


def _healthy(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False
