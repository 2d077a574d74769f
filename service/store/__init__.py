"""The storage layer: ids in, frozen records out; ORM rows never leave it."""

from service.store.records import (
    AttemptOutcome,
    AttemptRecord,
    ExportedModel,
    Lease,
    SearchRecord,
    SearchStatus,
    TrialRecord,
    TrialStatus,
    WorkerRecord,
)
from service.store.schema import SchemaMismatchError, ensure_schema_current, migrate
from service.store.store import (
    IdempotencyConflictError,
    LeaseLostError,
    LeaseState,
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
    "SchemaMismatchError",
    "SearchPage",
    "SearchRecord",
    "SearchStatus",
    "Store",
    "Submission",
    "TrialRecord",
    "TrialStatus",
    "WorkerRecord",
    "create_store",
    "ensure_schema_current",
    "migrate",
]
