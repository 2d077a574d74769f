"""The storage layer: ids in, frozen records out; ORM rows never leave it."""

from service.store.records import (
    AttemptOutcome,
    AttemptRecord,
    ExportedModel,
    Lease,
    SearchKey,
    SearchRecord,
    SearchRevision,
    SearchStatus,
    TokenRecord,
    TrialRecord,
    TrialStatus,
    WorkerRecord,
)
from service.store.schema import SchemaMismatchError, ensure_schema_current, migrate
from service.store.store import (
    IdempotencyConflictError,
    LeaseLostError,
    LeaseState,
    QueueFullError,
    SearchPage,
    Store,
    Submission,
    create_store,
)

__all__ = [
    "AttemptOutcome",
    "AttemptRecord",
    "ExportedModel",
    "IdempotencyConflictError",
    "Lease",
    "LeaseLostError",
    "LeaseState",
    "QueueFullError",
    "SchemaMismatchError",
    "SearchKey",
    "SearchPage",
    "SearchRecord",
    "SearchRevision",
    "SearchStatus",
    "Store",
    "Submission",
    "TokenRecord",
    "TrialRecord",
    "TrialStatus",
    "WorkerRecord",
    "create_store",
    "ensure_schema_current",
    "migrate",
]
