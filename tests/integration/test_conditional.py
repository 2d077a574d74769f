"""Conditional GETs of a search, its leaderboard and its CSV, on both databases: weak ETags
from the search's revision, 304s to a current If-None-Match without reading its trials."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nas.core.store import SlotLease, Store, TrialStatus
from tests.support.factories import search_body, submit
from tests.support.leases import join
from tests.support.owners import OWNER, ClientFactory
from tests.support.statements import statements

REPRESENTATIONS = ("", "/leaderboard", "/leaderboard.csv")
WEAK_TAG = re.compile(r'^W/"[0-9a-f]+"$')


@pytest.fixture
def search_id(client: TestClient, data_root: Path) -> str:
    return submit(client, search_body(data_root / "flowers"))["id"]


def url(search_id: str, representation: str = "") -> str:
    return f"/v1/searches/{search_id}{representation}"


def tag_of(client: TestClient, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert WEAK_TAG.match(response.headers["etag"]), response.headers
    assert "no-cache" in response.headers["cache-control"]
    return response.headers["etag"]


def claim(store: Store, search_id: str) -> SlotLease:
    lease = join(store)
    assert lease.search_id == search_id
    return lease


@pytest.mark.parametrize("representation", REPRESENTATIONS)
def test_current_tag_gets_304_without_a_body(
    client: TestClient, search_id: str, representation: str
) -> None:
    tag = tag_of(client, url(search_id, representation))

    again = client.get(url(search_id, representation), headers={"If-None-Match": tag})

    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == tag
    assert "no-cache" in again.headers["cache-control"]


@pytest.mark.parametrize("representation", REPRESENTATIONS)
def test_each_write_changes_the_tag(
    client: TestClient, store: Store, search_id: str, representation: str
) -> None:
    path = url(search_id, representation)
    tags = [tag_of(client, path)]
    lease = claim(store, search_id)
    tags.append(tag_of(client, path))
    store.start_trial(lease, "0", {"units": 8})
    tags.append(tag_of(client, path))
    store.record_epoch(
        lease, "0", epoch=0, metrics={"val_accuracy": 0.4}, score=0.4, params=10, seconds=1
    )
    tags.append(tag_of(client, path))
    store.finish_trial(lease, "0", status=TrialStatus.COMPLETED, score=0.4, seconds=1)
    tags.append(tag_of(client, path))

    assert len(set(tags)) == len(tags)
    stale = client.get(path, headers={"If-None-Match": tags[-2]})
    assert stale.status_code == 200
    assert stale.headers["etag"] == tags[-1]
    assert stale.content


def test_representations_have_their_own_tags(client: TestClient, search_id: str) -> None:
    tags = {
        representation: tag_of(client, url(search_id, representation))
        for representation in REPRESENTATIONS
    }
    assert len(set(tags.values())) == len(REPRESENTATIONS)

    for representation in REPRESENTATIONS:
        for other, tag in tags.items():
            answer = client.get(url(search_id, representation), headers={"If-None-Match": tag})
            assert answer.status_code == (304 if other == representation else 200)


@pytest.mark.parametrize(
    ("header", "status_code"),
    [
        ("{tag}", 304),
        ("{strong}", 304),  # If-None-Match compares weakly: W/ or not, the same tag
        ('"0000", {tag}', 304),
        ('W/"0000" , {strong}', 304),
        ("*", 304),
        ('W/"0000"', 200),
        ("{tag}x", 200),  # malformed: a full answer, never a wrong 304
        ("", 200),
        ("not a tag", 200),
    ],
)
def test_if_none_match_uses_weak_comparison(
    client: TestClient, search_id: str, header: str, status_code: int
) -> None:
    tag = tag_of(client, url(search_id))
    sent = header.format(tag=tag, strong=tag.removeprefix("W/"))

    assert client.get(url(search_id), headers={"If-None-Match": sent}).status_code == status_code


def test_other_owners_get_404_and_admins_the_same_tag(
    client: TestClient, client_as: ClientFactory, search_id: str
) -> None:
    tag = tag_of(client, url(search_id))

    other = client_as("mallory").get(url(search_id), headers={"If-None-Match": tag})
    admin = client_as("root", admin=True).get(url(search_id), headers={"If-None-Match": tag})
    missing = client.get(url("0" * 32), headers={"If-None-Match": tag})

    assert (other.status_code, missing.status_code) == (404, 404)
    assert "etag" not in other.headers
    assert other.json() == {"detail": f"no search {search_id}"}
    assert admin.status_code == 304
    assert admin.headers["etag"] == tag
    assert client_as(OWNER).get(url(search_id), headers={"If-None-Match": tag}).status_code == 304


@pytest.mark.parametrize("representation", REPRESENTATIONS)
def test_304_reads_the_revision_and_no_trials(
    client: TestClient, store: Store, search_id: str, representation: str
) -> None:
    lease = claim(store, search_id)
    store.start_trial(lease, "0", {"units": 8})

    with statements(store) as full:
        tag = tag_of(client, url(search_id, representation))
    with statements(store) as revalidated:
        answer = client.get(url(search_id, representation), headers={"If-None-Match": tag})

    assert answer.status_code == 304
    assert any("trials" in statement for statement in full), "the counter sees trial reads"
    assert_reads_the_revision_alone(revalidated)


def assert_reads_the_revision_alone(seen: list[str]) -> None:
    assert not any(
        table in statement
        for statement in seen
        for table in ("trials", "search_attempts", "exported_models")
    ), seen
    assert len([statement for statement in seen if "searches" in statement]) == 1


@pytest.mark.parametrize("representation", REPRESENTATIONS)
def test_each_revision_is_rendered_once_for_every_caller(
    client: TestClient,
    client_as: ClientFactory,
    store: Store,
    search_id: str,
    representation: str,
) -> None:
    lease = claim(store, search_id)
    store.start_trial(lease, "0", {"units": 8})
    first = client.get(url(search_id, representation))

    with statements(store) as second_caller:
        second = client_as("root", admin=True).get(url(search_id, representation))
    store.record_epoch(
        lease, "0", epoch=0, metrics={"val_accuracy": 0.4}, score=0.4, params=10, seconds=1
    )
    with statements(store) as after_a_write:
        third = client.get(url(search_id, representation))

    assert second.status_code == 200
    assert (second.content, second.headers["etag"]) == (first.content, first.headers["etag"])
    assert second.headers["content-type"] == first.headers["content-type"]
    assert_reads_the_revision_alone(second_caller)
    assert third.headers["etag"] != first.headers["etag"]
    assert len(after_a_write) > len(second_caller), "a new revision is rendered anew"


def test_a_kept_answer_is_only_for_callers_who_may_see_the_search(
    client: TestClient, client_as: ClientFactory, search_id: str
) -> None:
    assert client.get(url(search_id, "/leaderboard")).status_code == 200

    other = client_as("mallory").get(url(search_id, "/leaderboard"))

    assert other.status_code == 404
    assert other.json() == {"detail": f"no search {search_id}"}
