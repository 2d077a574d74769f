"""How long the dashboard's search page takes to show a 500-trial leaderboard.

Seeds a finished search of N trials with per-epoch histories straight through the storage
layer, serves it with ``nas serve``, and times in headless Chromium (Debian's, driven by
Playwright) from navigation to the leaderboard table on screen, and to the charts drawn, each
time in a fresh browser context (nothing cached).

Usage: python -m benchmarks.dashboard_load [--trials 500] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from benchmarks.harness import FLOWERS, running_service
from nas.core.store import create_store
from tests.support.seeding import seed_finished_search

CHROMIUM = "/usr/bin/chromium"

# Runs before the page's own scripts: the token for the tab, and a note of the moment the
# leaderboard's first rows are in the document (performance.now() counts from navigation).
PRELUDE = """
sessionStorage.setItem("nas-token", %s);
new MutationObserver((_changes, observer) => {
  if (document.querySelector("table.board tbody tr")) {
    window.tableShownAt = performance.now();
    observer.disconnect();
  }
}).observe(document, { childList: true, subtree: true });
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=10, help="history length of each trial")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--screenshot", type=Path, default=Path("test-artifacts/dashboard"))
    args = parser.parse_args()

    with running_service(FLOWERS) as service:
        store = create_store(service.settings.database_url)
        started = time.perf_counter()
        search_id = seed_finished_search(
            store,
            owner="benchmark",
            dataset_path=str(FLOWERS),
            trials=args.trials,
            epochs=args.epochs,
        )
        seeded = time.perf_counter() - started
        store.dispose()
        started = time.perf_counter()
        board = service.client.get(f"/v1/searches/{search_id}/leaderboard")
        api_seconds = time.perf_counter() - started
        (token,) = service.issue_tokens(1, owner="benchmark")
        url = f"{service.client.base_url}".rstrip("/") + f"/#/searches/{search_id}"

        shown, settled = [], []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM)
            for repeat in range(args.repeats):
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                context.add_init_script(PRELUDE % json.dumps(token))
                page = context.new_page()
                started = time.perf_counter()
                page.goto(url)
                page.wait_for_function("() => window.tableShownAt !== undefined", timeout=60_000)
                page.wait_for_function(
                    "(n) => Chart.getChart(document.getElementById('chart-scatter'))"
                    "?.data.datasets[0]?.data.length === n",
                    arg=args.trials,
                )
                settled.append(time.perf_counter() - started)
                shown.append(page.evaluate("window.tableShownAt") / 1000)
                if repeat == 0:
                    args.screenshot.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=args.screenshot / f"search-{args.trials}-trials.png")
                context.close()
            browser.close()

    print(
        json.dumps(
            {
                "trials": args.trials,
                "epochs_per_trial": args.epochs,
                "seed_seconds": round(seeded, 1),
                "leaderboard_json_bytes": len(board.content),
                "leaderboard_api_seconds": round(api_seconds, 3),
                "table_shown_seconds": [round(value, 3) for value in shown],
                "table_shown_median_seconds": round(statistics.median(shown), 3),
                "until_charts_drawn_median_seconds": round(statistics.median(settled), 3),
                "screenshot": str(args.screenshot / f"search-{args.trials}-trials.png"),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
