"""The dashboard in headless Chromium against a real ``nas serve`` and a real worker: a
finished search, a running one, and a large seeded one; and, queued, searches of each kind of
dataset. Screenshots go to ``test-artifacts/dashboard``."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from nas.cli.launcher import settings_env, start_nas, stop_process, wait_until
from nas.core.settings import Settings
from nas.core.store import Store
from nas.core.tokens import issue_token
from tests.support.factories import search_body, submit
from tests.support.flowers import copy_flowers_slice
from tests.support.live import cli_token, live_api, wait_for_status
from tests.support.seeding import seed_finished_search
from tests.support.tfrecord_shards import write_shards

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
TIMEOUT_MS = 90_000
SEEDED_TRIALS = 230  # three pages of the leaderboard

# What each chart has drawn: data points in its Chart.js instance, and coloured pixels inside
# its plot area (axes, grid lines and labels are grey or black; the data is coloured).
CHART_INK = """(id) => {
  const canvas = document.getElementById(id);
  const chart = Chart.getChart(canvas);
  const points = chart.data.datasets.reduce((sum, set) => sum + set.data.length, 0);
  const { left, top, right, bottom } = chart.chartArea;
  const scale = chart.currentDevicePixelRatio;
  const pixels = canvas.getContext("2d").getImageData(
    left * scale, top * scale, (right - left) * scale, (bottom - top) * scale).data;
  let coloured = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    const [r, g, b, a] = [pixels[i], pixels[i + 1], pixels[i + 2], pixels[i + 3]];
    if (a > 0 && (r !== g || g !== b)) coloured++;
  }
  return { points, coloured };
}"""


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (which downloads no browser)."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


def submit_search(
    api: httpx.Client, photos: Path, test_split: float | None = None, **tuner: int
) -> str:
    body = search_body(
        photos,
        dataset={"test_split": test_split},
        space={"min_conv_blocks": 1, "max_conv_blocks": 2, "filters": [8, 16]},
        tuner={"batch_size": 8, "seed": 3, **tuner},
        export_top_k=1,
    )
    return submit(api, body)["id"]


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def rows(page: Page) -> list[str]:
    """The trial ids of the leaderboard rows on screen."""
    return page.eval_on_selector_all("table.board tbody tr", "rs => rs.map(r => r.dataset.trial)")


def downloaded(page: Page, label: str) -> bytes:
    with page.expect_download() as download:
        page.get_by_role("button", name=label).click()
    return Path(download.value.path()).read_bytes()


def curve_points(page: Page) -> int:
    return page.evaluate(CHART_INK, "chart-val_accuracy")["points"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_dashboard_in_chromium(
    settings: Settings, store: Store, tmp_path: Path, browser: Browser
) -> None:
    photos = copy_flowers_slice(settings.data_roots[0] / "dashboard-flowers", per_class=6)
    logs = tmp_path / "logs"
    token = cli_token(settings, "dana")
    seeded = seed_finished_search(
        store, owner="dana", dataset_path=str(photos), trials=SEEDED_TRIALS, epochs=2
    )
    with live_api(settings, logs, token) as api:
        finished = submit_search(api, photos, test_split=0.25, max_trials=2, epochs=2)
        running = submit_search(api, photos, max_trials=20, epochs=100)
        worker = start_nas(["worker"], settings_env(settings), logs / "worker.log")
        try:
            done = wait_for_status(api, finished, {"succeeded", "failed", "cancelled"}, 300)
            assert done["status"] == "succeeded", (logs / "worker.log").read_text()[-3000:]
            wait_until(
                lambda: any(
                    t["epochs"]
                    for t in api.get(f"/v1/searches/{running}/leaderboard").json()["trials"]
                ),
                180,
                "the running search's first epoch",
            )
            drive(browser, str(api.base_url).rstrip("/"), token, api, finished, running, seeded)
            wait_for_status(api, running, {"cancelled"}, 60)
        finally:
            stop_process(worker)


def drive(
    browser: Browser,
    base_url: str,
    token: str,
    api: httpx.Client,
    finished: str,
    running: str,
    seeded: str,
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    # The token is asked for once, then kept for the tab.
    page.goto(base_url + "/")
    page.locator("#token-dialog[open]").wait_for()
    page.fill("#token-input", token)
    page.press("#token-input", "Enter")
    for search_id, status in ((finished, "succeeded"), (running, "running"), (seeded, "succeeded")):
        row = page.locator(f"tr[data-search='{search_id}']")
        assert row.locator(".status").inner_text() == status
    assert page.locator(f"tr[data-search='{seeded}'] progress").get_attribute("value") == str(
        SEEDED_TRIALS
    )
    shot(page, "searches")

    # A finished search: its leaderboard, charts, best model and downloads.
    page.click(f"a[href='#/searches/{finished}']")
    page.locator("#summary").wait_for()
    board = api.get(f"/v1/searches/{finished}/leaderboard").json()["trials"]
    assert rows(page) == [trial["trial_id"] for trial in board] and len(board) == 2
    for chart, points in (("chart-val_accuracy", 4), ("chart-val_loss", 4), ("chart-scatter", 2)):
        ink = page.evaluate(CHART_INK, chart)
        assert ink["points"] == points, chart
        assert ink["coloured"] > 30, chart
    assert "Total params" in page.inner_text("#summary")
    (best,) = api.get(f"/v1/searches/{finished}/models").json()["models"]
    test_accuracy = f"{best['test_accuracy']:.4f}"
    assert f"test accuracy {test_accuracy}" in page.inner_text("li[data-rank='1']")
    best_row = page.locator(f"table.board tbody tr[data-trial='{best['trial_id']}']")
    assert best_row.locator("td:nth-child(5)").inner_text() == test_accuracy
    # Where it ran: its host, worker and accelerator, after "Stopped early".
    where = [best_row.locator(f"td:nth-child({n})").inner_text() for n in (11, 12, 13)]
    (ran,) = [trial for trial in board if trial["trial_id"] == best["trial_id"]]
    assert where[:2] == [ran["hostname"], ran["worker_id"]]
    assert where[2].startswith(ran["accelerator"]["platform"])
    shot(page, "search-finished")
    savedmodel = downloaded(page, "Download SavedModel (.tar.gz)")
    assert savedmodel[:2] == b"\x1f\x8b"
    assert savedmodel == api.get(f"/v1/searches/{finished}/models/1/savedmodel").content
    keras_file = downloaded(page, "Download .keras file")
    assert keras_file[:2] == b"PK"
    assert keras_file == api.get(f"/v1/searches/{finished}/models/1/keras").content
    exported = list(csv.DictReader(downloaded(page, "Download CSV").decode().splitlines()))
    assert [row["trial_id"] for row in exported] == rows(page)
    assert json.loads(downloaded(page, "Download JSON"))["trials"] == board

    # A large search: one page of rows at a time, sortable by any column.
    page.goto(f"{base_url}/#/searches/{seeded}")
    page.get_by_text(f"Page 1 of 3 ({SEEDED_TRIALS} trials)").wait_for()
    assert len(rows(page)) == 100
    scores = sorted(
        t["score"] for t in api.get(f"/v1/searches/{seeded}/leaderboard").json()["trials"]
    )
    first_score = "table.board tbody tr:first-child td:nth-child(4)"
    assert page.inner_text(first_score) == f"{scores[-1]:.4f}"
    page.get_by_role("button", name="Next").click()
    page.get_by_text("Page 2 of 3").wait_for()
    assert page.inner_text(first_score) == f"{scores[-101]:.4f}"  # rank 101
    page.get_by_role("columnheader", name="Score").click()  # a new order starts at page 1
    page.get_by_text("Page 1 of 3").wait_for()
    assert page.inner_text(first_score) == f"{scores[0]:.4f}"
    page.get_by_role("columnheader", name="Score").click()
    assert page.inner_text(first_score) == f"{scores[-1]:.4f}"
    scatter = page.evaluate(CHART_INK, "chart-scatter")
    assert scatter["points"] == SEEDED_TRIALS and scatter["coloured"] > 1_000
    shot(page, "search-large")

    # A running search updates without a reload, then is cancelled from the page.
    page.goto(f"{base_url}/#/searches/{running}")
    page.locator("h1 .status", has_text="running").wait_for()
    page.evaluate("window.notReloaded = true")
    before = curve_points(page)
    assert before >= 1 and page.evaluate(CHART_INK, "chart-val_loss")["coloured"] > 0
    page.wait_for_function(
        "([n]) => window.notReloaded && Chart.getChart(document.getElementById("
        "'chart-val_accuracy')).data.datasets.reduce((s, d) => s + d.data.length, 0) > n",
        arg=[before],
    )
    shot(page, "search-running")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel search").click()
    page.locator("h1 .status", has_text="cancelled").wait_for()
    assert page.evaluate("window.notReloaded") is True
    assert curve_points(page) > before  # the stopped trial's curve stays
    page.get_by_text("Models are exported when the search ends.").wait_for(state="detached")
    shot(page, "search-cancelled")

    # Back on the finished search, its copies are revalidated (304s) and drawn again.
    revalidated: list[str] = []
    page.on("response", lambda r: revalidated.append(r.url) if r.status == 304 else None)
    page.goto(f"{base_url}/#/searches/{finished}")
    page.locator("h1", has_text=f"Search {finished[:12]}").wait_for()
    assert rows(page) == [trial["trial_id"] for trial in board]
    assert curve_points(page) == 4
    assert sorted(url.removeprefix(base_url) for url in revalidated) == [
        f"/v1/searches/{finished}",
        f"/v1/searches/{finished}/leaderboard",
    ]

    assert errors == [], errors

    # A refused token asks again.
    page.evaluate("sessionStorage.setItem('nas-token', 'nas_revoked_nothing')")
    page.reload()
    page.locator("#token-dialog[open]").wait_for()
    assert "refused" in page.inner_text("#token-error")
    page.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_kind_of_dataset_is_listed_and_shown(
    settings: Settings, store: Store, tmp_path: Path, browser: Browser
) -> None:
    """A folder, tf_flowers and a TFRecord glob, queued (no worker): the owner and an admin
    see each in the list by its short name, and its page names where its photos come from."""
    root = settings.data_roots[0]
    photos = copy_flowers_slice(root / "kinds-flowers", per_class=2)
    shards = root / "kinds-shards"
    write_shards(photos, shards)
    sources = {
        "kinds-flowers": {"path": str(photos)},
        "tf_flowers": {"name": "tf_flowers"},
        "flowers-*-of-02.tfrec": {"tfrecords": str(shards / "flowers-*-of-02.tfrec")},
    }
    token = cli_token(settings, "erin")
    admin = cli_token(settings, "root", admin=True)
    with live_api(settings, tmp_path / "logs", token) as api:
        searches = {}
        for name, source in sources.items():
            body = search_body(
                dataset=source,
                space={"min_conv_blocks": 1, "max_conv_blocks": 2},
                tuner={"max_trials": 2},
            )
            searches[name] = submit(api, body)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        base_url = str(api.base_url).rstrip("/")
        for who in (admin, token):
            page.goto(base_url + "/")
            page.evaluate(f"sessionStorage.setItem('nas-token', '{who}')")
            page.reload()
            for name, search in searches.items():
                row = page.locator(f"tr[data-search='{search['id']}']")
                assert row.locator("td:nth-child(2)").inner_text() == name
                assert row.locator(".status").inner_text() == "queued"
            assert page.locator("#notice").is_hidden(), page.inner_text("#notice")
        shot(page, "searches-every-dataset")
        for name, search in searches.items():
            page.goto(f"{base_url}/#/searches/{search['id']}")
            dataset = search["spec"]["dataset"]
            where = dataset["path"] or dataset["tfrecords"] or dataset["name"]
            page.get_by_text(f"{where} at 32 px").wait_for()
            assert page.locator("#notice").is_hidden(), page.inner_text("#notice")
            shot(page, f"search-{next(iter(sources[name]))}")
        assert errors == [], errors
        page.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_api_docs_in_chromium_under_their_csp(
    settings: Settings, store: Store, tmp_path: Path, browser: Browser
) -> None:
    token = issue_token(store, "dana").secret
    with live_api(settings, tmp_path / "logs", token) as api:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        outside: list[str] = []
        page.on("response", lambda r: problems.append(r.url) if r.status >= 400 else None)
        page.on(
            "request",
            lambda request: (
                outside.append(request.url)
                if not request.url.startswith(str(api.base_url))
                else None
            ),
        )

        page.goto(str(api.base_url.join("/docs")))
        page.locator(".opblock-summary-path[data-path='/v1/searches']").first.wait_for()
        shot(page, "api-docs")
        # "Try it out" calls the API from the page, which its policy allows (same origin).
        page.click("#operations-health-healthz_healthz_get .opblock-summary")
        page.click("button.try-out__btn")
        page.click("button.execute")
        answered = page.locator(".live-responses-table tbody .response-col_status").inner_text()
        paths = page.eval_on_selector_all(
            ".opblock-summary-path", "spans => spans.map(s => s.dataset.path)"
        )
        page.close()
        documented = api.get("/openapi.json").json()["paths"]

    assert set(documented) <= set(paths) and "/v1/searches" in documented
    assert answered.strip() == "200"
    assert problems == []  # a CSP violation is a console error
    assert outside == []
