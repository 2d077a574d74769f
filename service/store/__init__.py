"""The storage layer: ids in, frozen records out; ORM rows never leave it."""

from service.store.records import (
    ExportedModel,
    Lease,
    SearchRecord,
    SearchStatus,
    TrialRecord,
    TrialStatus,
    WorkerRecord,
)
from service.store.schema import SchemaMismatchError, ensure_schema_current, migrate
from service.store.store import LeaseLostError, LeaseState, SearchPage, Store, create_store

__all__ = [
    "ExportedModel",
    "Lease",
    "LeaseLostError",
    "LeaseState",
    "SchemaMismatchError",
    "SearchPage",
    "SearchRecord",
    "SearchStatus",
    "Store",
    "TrialRecord",
    "TrialStatus",
    "WorkerRecord",
    "create_store",
    "ensure_schema_current",
    "migrate",
]
