"""``dataset.path`` and TFRecord globs must lie inside NAS_DATA_ROOTS once every link is
followed, and the refusal looks the same whether or not anything exists outside."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nas.api import create_app
from nas.core.settings import Settings
from nas.core.store import Store
from nas.core.tokens import issue_token
from tests.support.factories import search_body
from tests.support.owners import bearer

OUTSIDE = "must lie inside one of the configured data roots (NAS_DATA_ROOTS)"


@dataclass(frozen=True)
class Tree:
    """A data root holding a valid ``flowers`` copy, and real photos outside every root."""

    root: Path
    outside: Path  # a valid dataset outside every data root
    sibling: Path  # a valid dataset in a folder whose name starts with the root's name


@pytest.fixture
def tree(data_root: Path, tmp_path: Path) -> Iterator[Tree]:
    root = tmp_path / "data"
    shutil.copytree(data_root / "flowers", root / "flowers")
    outside = tmp_path / "private" / "flowers"
    shutil.copytree(data_root / "flowers", outside)
    sibling = tmp_path / "data-evil" / "flowers"
    shutil.copytree(data_root / "flowers", sibling)
    yield Tree(root=root, outside=outside, sibling=sibling)


@pytest.fixture
def submit_to(settings: Settings, store: Store, tree: Tree) -> Iterator[Callable[..., object]]:
    """``submit_to(path)``: POST a search on ``path`` to an API whose only root is tree.root."""
    app = create_app(settings.model_copy(update={"data_roots": [tree.root]}), store)
    with TestClient(app, headers=bearer(issue_token(store, "alice").secret)) as client:

        def submit(path: str | Path):
            return client.post("/v1/searches", json=search_body(path))

        yield submit


def refusal(response) -> tuple[list, str]:
    """The location and message of a one-error 422 (not its echo of the input)."""
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    return error["loc"], error["msg"]


def link(at: Path, to: Path) -> Path:
    at.parent.mkdir(parents=True, exist_ok=True)
    at.symlink_to(to, target_is_directory=to.is_dir())
    return at


ESCAPES: dict[str, Callable[[Tree], str | Path]] = {
    "absolute outside": lambda t: t.outside,
    "dot-dot out of the root": lambda t: f"{t.root}/flowers/../../private/flowers",
    "dot-dot to the file system root": lambda t: f"{t.root}/" + "../" * 40 + "etc",
    "sibling folder sharing the root's prefix": lambda t: t.sibling,
    "link to an outside dataset": lambda t: link(t.root / "shortcut", t.outside),
    "link to a missing outside folder": lambda t: link(t.root / "dangling", t.outside / "none"),
    "chain of links ending outside": lambda t: link(
        t.root / "hop1", link(t.root / "deeper" / "hop2", t.outside)
    ),
    "link to /": lambda t: f"{link(t.root / 'slash', Path('/'))}/etc",
    "outside path that does not exist": lambda t: f"/nonexistent-{uuid.uuid4().hex}",
    "percent-encoded dot-dot": lambda t: f"{t.root}/%2e%2e/private/flowers",
    "NUL byte": lambda t: f"{t.root}/flowers\x00/../../private",
    "home of an unknown user": lambda t: f"~nosuchuser{uuid.uuid4().hex[:6]}/flowers",
    "home folder": lambda t: "~",
    "empty-looking relative path": lambda t: ".",
}


@pytest.mark.parametrize("case", ESCAPES)
def test_escapes_get_one_answer(
    submit_to: Callable, tree: Tree, store: Store, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree.outside.parent)  # relative paths resolve outside the root
    path = ESCAPES[case](tree)

    loc, message = refusal(submit_to(path))

    if case == "percent-encoded dot-dot":  # a folder literally named %2e%2e, inside the root
        assert (loc, "is not a folder" in message) == (["body", "dataset", "path"], True)
    else:
        assert (loc, message) == (["body", "dataset", "path"], OUTSIDE)
    assert store.list_searches(limit=10, offset=0, owner=None).total == 0


def test_links_that_stay_inside_the_roots_are_followed(submit_to: Callable, tree: Tree) -> None:
    shortcut = link(tree.root / "nested" / "shortcut", tree.root / "flowers")

    for path in (shortcut, f"{tree.root}/nested/../nested/shortcut"):
        accepted = submit_to(path)

        assert accepted.status_code == 201, accepted.text
        stored = accepted.json()["spec"]["dataset"]["path"]
        assert stored == str((tree.root / "flowers").resolve())


@pytest.mark.parametrize("what", ["class folder", "one photo"])
def test_links_inside_a_dataset_may_not_lead_out(
    submit_to: Callable, tree: Tree, store: Store, what: str
) -> None:
    dataset = tree.root / "mixed"
    shutil.copytree(tree.root / "flowers", dataset)
    if what == "class folder":
        link(dataset / "zz-private", tree.outside / "roses")
    else:
        photo = next((tree.outside / "tulips").iterdir())
        link(dataset / "tulips" / "zz-private.jpg", photo)

    loc, message = refusal(submit_to(dataset))

    assert loc == ["body", "dataset", "path"]
    assert message == "holds links to files outside the configured data roots (NAS_DATA_ROOTS)"
    assert store.list_searches(limit=10, offset=0, owner=None).total == 0


def test_a_data_root_reached_through_a_link_still_works(
    settings: Settings, store: Store, tree: Tree, tmp_path: Path
) -> None:
    root_link = link(tmp_path / "root-link", tree.root)
    app = create_app(settings.model_copy(update={"data_roots": [root_link]}), store)
    with TestClient(app, headers=bearer(issue_token(store, "alice").secret)) as client:
        for path in (root_link / "flowers", tree.root / "flowers"):
            response = client.post(
                "/v1/searches",
                json={
                    "dataset": {"path": str(path), "image_size": 32},
                    "space": {"max_conv_blocks": 3},
                },
            )
            assert (response.status_code, response.json()["spec"]["dataset"]["path"]) == (
                201,
                str(tree.root.resolve() / "flowers"),
            ), response.text


def test_the_answer_to_a_link_never_depends_on_its_outside_target(
    submit_to: Callable, tree: Tree
) -> None:
    """A class folder or photo linking out: one 422, byte for byte, whatever is out there."""
    dataset = tree.root / "linking"
    shutil.copytree(tree.root / "flowers", dataset)
    empty_folder = tree.outside.parent / "empty"
    empty_folder.mkdir()
    outside_photo = next((tree.outside / "tulips").iterdir())
    targets = {
        "missing path": tree.outside.parent / "missing",
        "empty folder": empty_folder,
        "folder of photos": tree.outside / "roses",
        "photo": outside_photo,
    }
    for link_at in (dataset / "zz-private", dataset / "tulips" / "zz-private.jpg"):
        bodies = {}
        for name, target in targets.items():
            link_at.unlink(missing_ok=True)
            link_at.symlink_to(target)
            response = submit_to(dataset)
            assert response.status_code == 422, f"{link_at.name} -> {name}: {response.text}"
            bodies[name] = response.content
        link_at.unlink()

        assert len(set(bodies.values())) == 1, bodies
        assert b"holds links to files outside the configured data roots" in bodies["photo"]


@pytest.fixture
def submit_glob(settings: Settings, store: Store, tree: Tree) -> Iterator[Callable[..., object]]:
    """``submit_glob(pattern)``: POST a search on TFRecord shards matching ``pattern``."""
    app = create_app(settings.model_copy(update={"data_roots": [tree.root]}), store)
    with TestClient(app, headers=bearer(issue_token(store, "alice").secret)) as client:

        def submit(pattern: str):
            return client.post("/v1/searches", json=search_body(dataset={"tfrecords": pattern}))

        yield submit


GLOB_PROBES: dict[str, str] = {
    "dot-dot after a wildcard": "{root}/*/../../private/probe/secret-probe.tfrec",
    "dot-dot after a character class": "{root}/*/../../private/probe/[a-s]*",
    "dot-dot after a question mark": "{root}/fl?wers/../../private/probe/secret-prob?.tfrec",
    "dot-dot before a wildcard": "{root}/flowers/../../private/probe/secret-*",
    "many dot-dots to the file system root": "{root}/*/" + "../" * 40 + "{probe}/secret-*",
    "wildcard through a link out of the root": "{root}/arch*/secret-*.tfrec",
    "character class through a link out of the root": "{root}/archive/[r-t]*",
    "match that is a link out of the root": "{root}/linked/*.tfrec",
    "hidden match that is a link out of the root": "{root}/linked/.*",
}


@pytest.mark.parametrize("case", GLOB_PROBES)
def test_a_glob_cannot_tell_what_exists_outside_the_roots(
    submit_glob: Callable, tree: Tree, case: str
) -> None:
    """The same glob gets the same 422 body whether or not a file outside matches it."""
    probe = tree.outside.parent / "probe"
    probe.mkdir()
    link(tree.root / "archive", probe)  # an operator's link out of the root
    link(tree.root / "linked" / "a.tfrec", probe / "secret-probe.tfrec")
    link(tree.root / "linked" / ".hidden.tfrec", probe / "secret-probe.tfrec")
    pattern = GLOB_PROBES[case].format(root=tree.root, probe=str(probe).lstrip("/"))

    (probe / "secret-probe.tfrec").write_bytes(b"not a shard, but a file")
    when_it_exists = submit_glob(pattern)
    (probe / "secret-probe.tfrec").unlink()
    when_it_does_not = submit_glob(pattern)

    loc, _ = refusal(when_it_exists)
    assert loc == ["body", "dataset", "tfrecords"]
    assert when_it_exists.content == when_it_does_not.content


def test_a_submit_lists_at_most_the_configured_entries(
    settings: Settings, store: Store, tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past NAS_SUBMIT_SCAN_ENTRIES the API accepts and leaves the check to the worker."""
    dataset = tree.root / "late-link"
    shutil.copytree(tree.root / "flowers", dataset)
    link(dataset / "tulips" / "zz-private.jpg", next((tree.outside / "tulips").iterdir()))
    monkeypatch.setenv("NAS_SUBMIT_SCAN_ENTRIES", "20")
    assert Settings().submit_scan_entries == 20
    body = search_body(dataset)
    statuses = []
    for entries in (20, 100):
        limited = settings.model_copy(
            update={"data_roots": [tree.root], "submit_scan_entries": entries}
        )
        app = create_app(limited, store)
        with TestClient(app, headers=bearer(issue_token(store, "alice").secret)) as client:
            statuses.append(client.post("/v1/searches", json=body).status_code)

    assert statuses == [201, 422]  # 5 class folders, 60 photos and a link: 66 entries
