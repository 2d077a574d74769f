"""The storage layer: ids in, frozen records out; ORM rows never leave it."""

from service.store.records import (
    ExportedModel,
    Lease,
    SearchRecord,
    SearchStatus,
    TokenRecord,
    TrialRecord,
    TrialStatus,
    WorkerRecord,
)
from service.store.schema import SchemaMismatchError, ensure_schema_current, migrate
from service.store.store import (
    LeaseLostError,
    LeaseState,
    QueueFullError,
    SearchPage,
    Store,
    create_store,
)

__all__ = [
    "ExportedModel",
    "Lease",
    "LeaseLostError",
    "LeaseState",
    "QueueFullError",
    "SchemaMismatchError",
    "SearchPage",
    "SearchRecord",
    "SearchStatus",
    "Store",
    "TokenRecord",
    "TrialRecord",
    "TrialStatus",
    "WorkerRecord",
    "create_store",
    "ensure_schema_current",
    "migrate",
]
