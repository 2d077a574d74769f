"""What many tests build the same way: search request bodies, their submission, and small sets
of real photos decoded the way the worker decodes them."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from nas.core.folders import scan_folder
from nas.worker.datasets import ImageSet, load_images
from tests.support.flowers import copy_flowers_slice

Body = dict[str, Any]

# Version 1 of the codelab space, at most three blocks: small enough for 32 px photos.
MINIMAL_SPACE: Mapping[str, Any] = {"max_conv_blocks": 3}
# One trial of one epoch: a search a worker finishes in seconds.
ONE_TRIAL: Mapping[str, Any] = {"max_trials": 1, "epochs": 1}


def search_body(
    photos: Path | str | None = None,
    *,
    dataset: Mapping[str, Any] | None = None,
    space: Mapping[str, Any] | None = MINIMAL_SPACE,
    tuner: Mapping[str, Any] | None = None,
    **top: Any,
) -> Body:
    """A request for a search of the class folders in ``photos`` at 32 px.

    ``dataset`` is merged into that dataset section (another size, a split, another source in
    place of ``photos``); ``space`` replaces MINIMAL_SPACE (None: no space section, the
    service's default); ``tuner`` is the tuner section (None: none, the service's defaults);
    ``top`` are further top-level keys (``export_top_k``, ``objective``). Each call returns new
    dicts, free to change.
    """
    source = {} if photos is None else {"path": str(photos)}
    body: Body = {"dataset": {**source, "image_size": 32, **(dataset or {})}}
    if space is not None:
        body["space"] = dict(space)
    if tuner is not None:
        body["tuner"] = dict(tuner)
    return copy.deepcopy({**body, **top})


def submit(client: httpx.Client, body: Mapping[str, Any]) -> Body:
    """POST a search that must be accepted, in process (a TestClient) or over real HTTP (an
    httpx client of ``nas serve``); the created search as JSON."""
    response = client.post("/v1/searches", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def error_locs(response: httpx.Response) -> list[tuple[str | int, ...]]:
    """The ``loc`` of every error in a 422 answer."""
    assert response.status_code == 422, response.text
    return [tuple(error["loc"]) for error in response.json()["detail"]]


def decoded_flowers(
    tmp_path_factory: pytest.TempPathFactory, size: int, per_class: int = 2
) -> ImageSet:
    """``per_class`` real photos of each of the five flower classes, copied to a new folder and
    decoded at ``size`` pixels, uncached: for a module-scoped ``photos`` fixture."""
    folder = copy_flowers_slice(tmp_path_factory.mktemp("flowers"), per_class=per_class)
    return load_images(scan_folder(folder), size, cache_dir=None)
