"""Search lists a page at a time with opaque cursors, stable under submissions, on both
databases."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import text

from nas.core.store import Store
from tests.support.factories import error_locs, search_body, submit


def submit_some(client: TestClient, data_root: Path, count: int) -> list[str]:
    return [submit(client, search_body(data_root / "flowers"))["id"] for _ in range(count)]


def test_cursor_pages_neither_repeat_nor_skip_under_inserts(
    client: TestClient, data_root: Path
) -> None:
    before = submit_some(client, data_root, 5)[::-1]  # newest first
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 2}
    pages = 0
    while True:
        page = client.get("/v1/searches", params=params)
        assert page.status_code == 200, page.text
        listed = page.json()
        seen += [item["id"] for item in listed["items"]]
        pages += 1
        # Newer searches arrive between pages: they belong before the first page.
        submit_some(client, data_root, 1)
        if listed["next_cursor"] is None:
            break
        params = {"limit": 2, "cursor": listed["next_cursor"]}

    assert seen == before
    assert pages == 3


def test_last_full_page_has_no_cursor(client: TestClient, data_root: Path) -> None:
    submit_some(client, data_root, 2)
    listed = client.get("/v1/searches", params={"limit": 2}).json()
    assert len(listed["items"]) == 2
    assert listed["next_cursor"] is None


def test_offset_still_pages_for_old_clients(client: TestClient, data_root: Path) -> None:
    newest_first = submit_some(client, data_root, 3)[::-1]
    listed = client.get("/v1/searches", params={"limit": 1, "offset": 1}).json()
    assert [item["id"] for item in listed["items"]] == newest_first[1:2]
    assert listed["next_cursor"] is not None


def test_a_cursor_not_of_this_api_is_a_422_naming_it(client: TestClient) -> None:
    for cursor in ("garbage!", "bm90IGpzb24", "WzEsMl0", "WyIyMDI2LTEyLTAxVDAwOjAwOjAwIiwieCJd"):
        assert error_locs(client.get("/v1/searches", params={"cursor": cursor})) == [
            ("query", "cursor")
        ]


def test_searches_submitted_at_the_same_moment_page_by_id(store: Store) -> None:
    ids = [
        store.create_search(
            {"objective": "val_accuracy"}, trials_planned=1, owner="alice"
        ).search.id
        for _ in range(4)
    ]
    with store.engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE searches SET created_at = "
                "(SELECT created_at FROM searches WHERE id = :first)"
            ),
            {"first": ids[0]},
        )
    seen: list[str] = []
    after = None
    while True:
        page = store.list_searches(limit=1, owner="alice", after=after)
        seen += [search.id for search in page.items]
        if page.next_key is None:
            break
        after = page.next_key

    assert seen == sorted(ids, reverse=True)
