"""Submit-time checks of each dataset form: one source, data roots, buckets, globs, test classes.

Every refusal is a 422 naming the field and stores nothing; the checks list folders and globs
only, so they need no worker."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from nas.api import create_app
from nas.core.settings import Settings
from nas.core.store import Store
from nas.core.tokens import issue_token
from tests.support.factories import search_body
from tests.support.flowers import copy_flowers_slice
from tests.support.owners import bearer
from tests.support.tfrecord_shards import write_shards

OUTSIDE = "must lie inside one of the configured data roots (NAS_DATA_ROOTS)"
DOT_DOT = "may not hold '..' (write the glob from a data root down)"
BUCKET = "allowed-bucket"


@dataclass(frozen=True)
class Tree:
    """A data root with photos, test photos and shards, and shards outside every root."""

    root: Path
    outside: Path

    @property
    def flowers(self) -> str:
        return str(self.root / "flowers")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    base = tmp_path_factory.mktemp("dataset-forms")
    root = base / "data"
    flowers = copy_flowers_slice(root / "flowers", per_class=3)
    copy_flowers_slice(root / "flowers-test", per_class=2, start=3)
    copy_flowers_slice(root / "three-classes", per_class=2, start=3, classes=3)
    write_shards(flowers, root / "shards")
    outside = base / "private"
    write_shards(flowers, outside / "shards")
    (root / "shards-link").symlink_to(root / "shards")
    (root / "linked").mkdir()
    (root / "linked" / "a.tfrec").symlink_to(outside / "shards" / "flowers-00-of-02.tfrec")
    hidden = root / "hidden-link"
    shutil.copytree(root / "shards", hidden)
    (hidden / ".z.tfrec").symlink_to(outside / "shards" / "flowers-00-of-02.tfrec")
    return Tree(root=root, outside=outside)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the checks read no database, so one kind is enough."""
    return f"sqlite:///{tmp_path / 'nas.db'}"


@pytest.fixture
def submit(settings: Settings, store: Store, tree: Tree) -> Iterator[Callable[..., Any]]:
    """``submit(**dataset)``: POST a tiny search on that dataset."""
    limited = settings.model_copy(update={"data_roots": [tree.root], "data_buckets": [BUCKET]})
    app = create_app(limited, store)
    with TestClient(app, headers=bearer(issue_token(store, "alice").secret)) as client:

        def post(**dataset: Any):
            return client.post("/v1/searches", json=search_body(dataset=dataset))

        yield post


def refusal(response) -> tuple[list, str]:
    """The location and message of a one-error 422."""
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    return error["loc"], error["msg"]


REFUSED: dict[str, tuple[Callable[[Tree], dict], str, str]] = {
    "path and tfrecords": (
        lambda t: {"path": t.flowers, "tfrecords": f"{t.root}/shards/*"},
        "tfrecords",
        "give only one of dataset.path, dataset.tfrecords, dataset.name",
    ),
    "path and name": (
        lambda t: {"path": t.flowers, "name": "tf_flowers"},
        "name",
        "give only one of",
    ),
    "no source": (lambda t: {"test_split": 0.2}, "", "give one of dataset.path"),
    "unknown name": (lambda t: {"name": "imagenet"}, "name", "tf_flowers"),
    "test_path and test_split": (
        lambda t: {"path": t.flowers, "test_path": f"{t.root}/flowers-test", "test_split": 0.1},
        "test_split",
        "give dataset.test_path or dataset.test_split, not both",
    ),
    "class_names of a folder": (
        lambda t: {"path": t.flowers, "class_names": ["a", "b"]},
        "class_names",
        "only TFRecord datasets take class_names",
    ),
    "glob matching nothing": (
        lambda t: {"tfrecords": f"{t.root}/shards/*.tfrecord"},
        "tfrecords",
        "matches no file",
    ),
    "glob of a missing folder": (
        lambda t: {"tfrecords": f"{t.root}/nowhere/*.tfrec"},
        "tfrecords",
        "matches no file",
    ),
    "glob outside the roots": (
        lambda t: {"tfrecords": f"{t.outside}/shards/*.tfrec"},
        "tfrecords",
        OUTSIDE,
    ),
    "glob of a missing outside folder": (
        lambda t: {"tfrecords": f"{t.outside}/none/*.tfrec"},
        "tfrecords",
        OUTSIDE,
    ),
    "glob climbing out with dot-dots": (
        lambda t: {"tfrecords": f"{t.root}/shards/../../private/shards/*"},
        "tfrecords",
        DOT_DOT,
    ),
    "glob with dot-dots that stay inside": (
        lambda t: {"tfrecords": f"{t.root}/shards/../shards/*.tfrec"},
        "tfrecords",
        DOT_DOT,
    ),
    "glob matching a link to an outside shard": (
        lambda t: {"tfrecords": f"{t.root}/linked/*.tfrec"},
        "tfrecords",
        OUTSIDE,
    ),
    "glob matching a hidden link to an outside shard": (
        lambda t: {"tfrecords": f"{t.root}/hidden-link/*.tfrec"},
        "tfrecords",
        OUTSIDE,
    ),
    "bucket not allowed": (
        lambda t: {"tfrecords": "gs://someone-elses/flowers/*.tfrec"},
        "tfrecords",
        "reads a Cloud Storage bucket not allowed by NAS_DATA_BUCKETS",
    ),
    "other scheme": (
        lambda t: {"tfrecords": "s3://bucket/*.tfrec"},
        "tfrecords",
        "must be a local glob or a gs:// glob",
    ),
    "test_path outside the roots": (
        lambda t: {"path": t.flowers, "test_path": str(t.outside)},
        "test_path",
        OUTSIDE,
    ),
    "test classes differ from the folder's": (
        lambda t: {"path": t.flowers, "test_path": f"{t.root}/three-classes"},
        "test_path",
        "its class folders (daisy, dandelion, roses) differ from the training classes "
        "(daisy, dandelion, roses, sunflowers, tulips)",
    ),
    "test classes differ from tf_flowers'": (
        lambda t: {"name": "tf_flowers", "test_path": f"{t.root}/three-classes"},
        "test_path",
        "differ from the training classes",
    ),
    "test classes differ from class_names": (
        lambda t: {
            "tfrecords": f"{t.root}/shards/*",
            "class_names": ["a", "b", "c", "d", "e"],
            "test_path": f"{t.root}/flowers-test",
        },
        "test_path",
        "differ from the training classes (a, b, c, d, e)",
    ),
}


@pytest.mark.parametrize("case", REFUSED)
def test_bad_datasets_get_a_422_naming_the_field(
    submit: Callable, tree: Tree, store: Store, case: str
) -> None:
    dataset, field, message = REFUSED[case]

    loc, text = refusal(submit(**dataset(tree)))

    assert loc == ["body", "dataset", *([field] if field else [])]
    assert message in text
    assert store.list_searches(limit=10, offset=0, owner=None).total == 0


def test_each_form_is_accepted_with_its_paths_resolved(submit: Callable, tree: Tree) -> None:
    root = tree.root.resolve()
    accepted = {
        "folder and test folder": submit(
            path=f"{tree.root}/shards/../flowers", test_path=f"{tree.root}/flowers-test"
        ),
        "shards": submit(
            tfrecords=f"{tree.root}/shards-link/*-of-02.tfrec",
            class_names=["daisy", "dandelion", "roses", "sunflowers", "tulips"],
            test_path=f"{tree.root}/flowers-test",
        ),
        "allowed bucket": submit(tfrecords=f"gs://{BUCKET}/flowers/*.tfrec", test_split=0.15),
        "tf_flowers": submit(name="tf_flowers", test_split=0.15),
    }

    for case, response in accepted.items():
        assert response.status_code == 201, f"{case}: {response.text}"
    stored = {case: response.json()["spec"]["dataset"] for case, response in accepted.items()}
    assert stored["folder and test folder"]["path"] == str(root / "flowers")
    assert stored["folder and test folder"]["test_path"] == str(root / "flowers-test")
    assert stored["shards"]["tfrecords"] == str(root / "shards" / "*-of-02.tfrec")
    assert stored["allowed bucket"]["tfrecords"] == f"gs://{BUCKET}/flowers/*.tfrec"
    assert stored["tf_flowers"] | {"test_split": 0.15} == stored["tf_flowers"]
    assert stored["tf_flowers"]["path"] is None


def test_buckets_setting_is_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAS_DATA_BUCKETS", "flowers-data, more-data,")
    assert Settings().data_buckets == ["flowers-data", "more-data"]
    monkeypatch.delenv("NAS_DATA_BUCKETS")
    assert Settings().data_buckets == []


def test_old_bodies_with_a_path_only_still_work(submit: Callable, tree: Tree) -> None:
    response = submit(path=tree.flowers)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["dataset"]["tfrecords"] is None
