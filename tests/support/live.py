"""Real processes for end-to-end tests: ``nas serve`` on a free port and ``nas worker``s."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from nas.cli.launcher import NAS, settings_env, start_nas, stop_process, wait_until
from nas.core.ports import free_port
from nas.core.settings import Settings
from tests.support.owners import bearer


def cli_token(settings: Settings, owner: str, *, admin: bool = False) -> str:
    """A token made the way an operator makes one: ``nas token create``."""
    created = subprocess.run(
        [NAS, "token", "create", "--owner", owner, *(["--admin"] if admin else [])],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


@contextmanager
def live_api(settings: Settings, logs: Path, token: str) -> Iterator[httpx.Client]:
    """``nas serve`` on real HTTP; yields a client on its base URL that presents ``token``."""
    port = free_port()
    process = start_nas(["serve", "--port", str(port)], settings_env(settings), logs / "api.log")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=bearer(token))

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the API exited: {(logs / 'api.log').read_text()[-3000:]}")
        try:
            return client.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(healthy, 60, "the API to answer /healthz")
        yield client
    finally:
        client.close()
        stop_process(process)


def wait_for_status(
    client: httpx.Client, search_id: str, statuses: set[str], timeout: float
) -> dict:
    """Poll the search until its status is one of ``statuses``."""

    def reached() -> dict | None:
        search = client.get(f"/v1/searches/{search_id}").json()
        return search if search["status"] in statuses else None

    return wait_until(reached, timeout, f"search {search_id} to reach {sorted(statuses)}")
