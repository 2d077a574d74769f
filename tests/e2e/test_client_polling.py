"""The ``nas`` client against a live ``nas serve``: ``nas watch`` polls with If-None-Match (304s
while the search is unchanged, and still sees the change that ends it); ``nas status`` pages
by cursor."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from nas.cli.launcher import NAS_COMMAND, settings_env, wait_until
from nas.core.settings import Settings
from nas.core.store import Store
from tests.support.factories import search_body
from tests.support.live import cli_token, live_api


def test_watch_revalidates_until_the_search_changes(
    settings: Settings,
    store: Store,
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The API's access log, read while it runs, is what shows the 304s.
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    token = cli_token(settings, "watcher")
    logs = tmp_path / "logs"
    with live_api(settings, logs, token) as api:
        created = api.post("/v1/searches", json=search_body(data_root / "flowers"))
        assert created.status_code == 201, created.text
        search_id = created.json()["id"]
        polled = re.compile(rf'"GET /v1/searches/{search_id} HTTP/1.1" (\d+)')
        env = settings_env(settings) | {"NAS_URL": str(api.base_url), "NAS_TOKEN": token}
        watch = subprocess.Popen(
            [*NAS_COMMAND, "watch", search_id, "--interval", "0.2"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:

            def revalidated() -> bool:
                assert watch.poll() is None, watch.communicate()
                return polled.findall((logs / "api.log").read_text()).count("304") >= 3

            wait_until(
                revalidated,
                60,
                "three 304 answers to the watch",
            )
            assert api.post(f"/v1/searches/{search_id}/cancel").status_code == 202
            out, err = watch.communicate(timeout=60)
        finally:
            watch.kill()

    assert watch.returncode == 2, err
    assert f"search {search_id} cancelled" in out
    answers = polled.findall((logs / "api.log").read_text())
    assert answers[0] == "200" and answers[-1] == "200", answers
    assert set(answers) == {"200", "304"}


def test_status_pages_by_cursor(
    settings: Settings, store: Store, data_root: Path, tmp_path: Path
) -> None:
    token = cli_token(settings, "lister")
    with live_api(settings, tmp_path / "logs", token) as api:
        ids = []
        for _ in range(3):
            created = api.post("/v1/searches", json=search_body(data_root / "flowers"))
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
        env = settings_env(settings) | {
            "NAS_URL": str(api.base_url),
            "NAS_TOKEN": token,
            "COLUMNS": "200",
        }

        def status(*args: str) -> str:
            done = subprocess.run(
                [*NAS_COMMAND, "status", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        first = status("--limit", "2")
        (cursor,) = re.findall(r"nas status --cursor (\S+)", first)
        second = status("--limit", "2", "--cursor", cursor)

    assert [search_id in first for search_id in ids] == [False, True, True]
    assert [search_id in second for search_id in ids] == [True, False, False]
    assert "--cursor" not in second
