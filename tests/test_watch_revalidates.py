"""``nas watch`` polls with If-None-Match: a live ``nas serve`` answers it 304 while the
search is unchanged, and the watch still sees the change that ends it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from service.launcher import NAS_COMMAND, settings_env, wait_until
from service.settings import Settings
from service.store import Store
from tests.live import cli_token, live_api
from tests.test_api import minimal_body


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
        created = api.post("/v1/searches", json=minimal_body(data_root))
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
