"""Downloads come only from the search's own artifact folder, by integer rank: crafted ranks,
names and ids never reach another file, in process and over real HTTP."""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from nas.core.artifacts import SearchArtifacts
from nas.core.settings import Settings
from nas.core.store import Store
from tests.support.exports import finished_search
from tests.support.live import cli_token, live_api
from tests.support.owners import ClientFactory, bearer

SECRET = "SECRET-NOT-A-MODEL"


@dataclass(frozen=True)
class Planted:
    """Alice's search with a model, Bob's search with a model, and secrets around them."""

    alice_id: str
    bob_id: str
    own_files: frozenset[bytes]  # the bytes of alice's rank-1 files


@pytest.fixture
def planted(
    client: TestClient,
    client_as: ClientFactory,
    store: Store,
    settings: Settings,
    data_root: Path,
    tmp_path: Path,
) -> Planted:
    alice_id = finished_search(client, store, settings, data_root, "alice-model")
    bob_id = finished_search(client_as("bob"), store, settings, data_root, f"bob {SECRET}")
    alice_dir = SearchArtifacts(settings.artifacts_dir, alice_id).search_dir
    (alice_dir / "secret.txt").write_text(SECRET)
    (alice_dir / "models" / "secret.txt").write_text(SECRET)
    (settings.artifacts_dir / "secret.txt").write_text(SECRET)
    (tmp_path / "secret.txt").write_text(SECRET)
    files = SearchArtifacts(settings.artifacts_dir, alice_id).model(1)
    own = (files.summary_file, files.keras_file, files.savedmodel_tarball)
    return Planted(alice_id, bob_id, frozenset(path.read_bytes() for path in own))


CRAFTED_MODEL_PATHS = [
    "0/summary",
    "-1/summary",
    "2/summary",
    "1001/keras",
    "99999999999999999999999999999/summary",
    "1.5/summary",
    "1e0/summary",
    "0x1/summary",
    "rank-001/keras",
    "%2e%2e/summary",
    "..%2fsecret.txt",
    "%2e%2e%2fsecret.txt",
    "%2e%2e%2f%2e%2e%2fsecret.txt/summary",
    "1%2f..%2f..%2fsecret.txt",
    "1/..%2f..%2fsecret.txt",
    "1/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
    "1/summary%00",
    "1/summary%00.txt",
    "1/summary.txt",
    "1/model.keras",
    "1/savedmodel.tar.gz",
    "1/savedmodel%2f..%2f..%2fsecret.txt",
    "1/secret.txt",
    "%201/summary",
    "1%20/summary",
    "%EF%BC%91/summary",  # a full-width digit one
    "01/summary",
    "+1/summary",
    "{bob}/models/1/keras",
    "%2e%2e%2f%2e%2e%2f{bob}%2fmodels%2f1%2fkeras",
    "1/%2e%2e%2f%2e%2e%2f%2e%2e%2f{bob}%2fmodels%2frank-001%2fmodel.keras",
]

CRAFTED_SEARCH_PATHS = [
    "/v1/searches/..%2f{bob}/models/1/keras",
    "/v1/searches/{alice}%2f..%2f{bob}/models/1/keras",
    "/v1/searches/{alice}%00/models/1/keras",
    "/v1/searches/%2e%2e/models/1/keras",
    "/v1/searches/{bob}/models/1/keras",
    "/v1/searches/{bob}/models/1/summary",
    "/v1/searches/{bob}/models",
]


def crafted_paths(planted: Planted) -> list[str]:
    model_paths = [f"/v1/searches/{{alice}}/models/{tail}" for tail in CRAFTED_MODEL_PATHS]
    return [
        path.replace("{alice}", planted.alice_id).replace("{bob}", planted.bob_id)
        for path in model_paths + CRAFTED_SEARCH_PATHS
    ]


def assert_contained(status: int, content: bytes, planted: Planted, path: str) -> None:
    """A crafted request got a 4xx, or one of alice's own rank-1 files and nothing else."""
    assert SECRET.encode() not in content, path
    if status == 200:
        assert content in planted.own_files, (path, content[:200])
    else:
        assert status in {404, 405, 422}, (path, status, content[:200])


def test_crafted_ranks_and_names_stay_in_the_artifact_folder(
    client: TestClient, planted: Planted
) -> None:
    served = []
    for path in crafted_paths(planted):
        response = client.get(path)  # the test client raises on any 500
        assert_contained(response.status_code, response.content, planted, path)
        if response.status_code == 200:
            served.append(path.rsplit("/models/", 1)[1])

    # Only spellings of the integer 1 reach a file, and it is alice's own rank-1 model.
    assert set(served) <= {
        "01/summary",
        "+1/summary",
        "%EF%BC%91/summary",
        "%201/summary",
        "1%20/summary",
    }
    legit = client.get(f"/v1/searches/{planted.alice_id}/models/1/keras")
    assert (legit.status_code, legit.content) == (200, b"PK keras of alice-model")


def test_raw_dot_dot_paths_over_real_http(
    settings: Settings, store: Store, planted: Planted, tmp_path: Path
) -> None:
    token = cli_token(settings, "alice")
    alice, bob = planted.alice_id, planted.bob_id
    raw_paths = [
        f"/v1/searches/{alice}/models/1/../../../../secret.txt",
        f"/v1/searches/{alice}/models/1/../secret.txt",
        f"/v1/searches/{alice}/models/../../{bob}/models/1/keras",
        f"/v1/searches/{alice}/../{bob}/models/1/keras",
        "/v1/searches/../../../../../../etc/passwd",
        f"/v1/searches/{alice}/models/1/keras/../../../../../secret.txt",
        f"/v1/searches/{alice}/models/./1/./keras/..",
        *crafted_paths(planted),
    ]
    logs = tmp_path / "logs"
    with live_api(settings, logs, token) as api:
        port = httpx.URL(str(api.base_url)).port
        for path in raw_paths:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", path, headers=bearer(token))  # sent as written
            response = connection.getresponse()
            assert_contained(response.status, response.read(), planted, path)
            connection.close()
        assert api.get(f"/v1/searches/{alice}/models/1/summary").text.startswith("summary of")
    assert "500 Internal Server Error" not in (logs / "api.log").read_text()
