"""Real processes for end-to-end tests: ``nas serve`` on a free port and ``nas worker``s."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from service.launcher import free_port, settings_env, start_nas, stop_process, wait_until
from service.settings import Settings


@contextmanager
def live_api(settings: Settings, logs: Path) -> Iterator[httpx.Client]:
    """``nas serve`` on real HTTP; yields a client on its base URL."""
    port = free_port()
    process = start_nas(["serve", "--port", str(port)], settings_env(settings), logs / "api.log")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

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
