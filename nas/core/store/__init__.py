"""The storage layer: ids in, frozen records out; ORM rows never leave it."""

from nas.core.store.records import (
    AttemptOutcome,
    AttemptRecord,
    ExportedModel,
    Lease,
    SearchRecord,
    SearchStatus,
    TokenRecord,
    TrialRecord,
    TrialStatus,
    WorkerRecord,
)
from nas.core.store.schema import SchemaMismatchError, ensure_schema_current, migrate
from nas.core.store.store import (
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
    "SearchPage",
    "SearchRecord",
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
