"""The storage layer: ids in, frozen records out; ORM rows never leave it."""

from nas.core.errors import (
    IdempotencyConflictError,
    LeaseLostError,
    QueueFullError,
    SchemaMismatchError,
    StoreError,
    StoreUnavailableError,
)
from nas.core.store.records import (
    AttemptOutcome,
    AttemptRecord,
    EndedBy,
    ExportedModel,
    FinalTraining,
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
from nas.core.store.schema import ensure_schema_current, migrate
from nas.core.store.store import (
    LeaseState,
    SearchPage,
    Store,
    Submission,
    create_store,
)

__all__ = [
    "AttemptOutcome",
    "AttemptRecord",
    "EndedBy",
    "ExportedModel",
    "FinalTraining",
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
    "StoreError",
    "StoreUnavailableError",
    "Submission",
    "TokenRecord",
    "TrialRecord",
    "TrialStatus",
    "WorkerRecord",
    "create_store",
    "ensure_schema_current",
    "migrate",
]
