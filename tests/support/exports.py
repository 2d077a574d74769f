"""Searches that finished with an exported model on disk, put in place the way a worker does."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient

from nas.core.artifacts import SearchArtifacts
from nas.core.settings import Settings
from nas.core.store import ExportedModel, SearchStatus, Store
from tests.support.factories import ONE_TRIAL, search_body, submit
from tests.support.leases import finish_trials, join


def finished_search(
    client: TestClient, store: Store, settings: Settings, data_root: Path, marker: str
) -> str:
    """Submit a search as ``client``'s owner, let a worker finish it with one exported model
    whose files all hold ``marker``; its id."""
    search_id = submit(client, search_body(data_root / "flowers", tuner=ONE_TRIAL))["id"]
    lease = finish_trials(store, join(store, f"worker-{marker}"))
    assert lease.search_id == search_id
    files = SearchArtifacts(settings.artifacts_dir, search_id).model(1)
    files.directory.mkdir(parents=True)
    files.summary_file.write_text(f"summary of {marker}\nTotal params: 1\n")
    files.keras_file.write_bytes(f"PK keras of {marker}".encode())
    files.savedmodel_tarball.write_bytes(f"savedmodel of {marker}".encode())
    model = ExportedModel(
        search_id=search_id,
        rank=1,
        trial_id="t0",
        score=0.5,
        params=1,
        formats=("savedmodel", "keras"),
        created_at=datetime.now(UTC),
    )
    store.record_models(lease, [model])
    store.finish_search(lease, SearchStatus.SUCCEEDED)
    return search_id
