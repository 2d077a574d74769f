"""Property-based fuzzing of the API from its own OpenAPI schema: no 5xx, no response that
breaks the schema, on both databases."""

from __future__ import annotations

import hypothesis
import schemathesis
from schemathesis import checks

from nas.api import create_app
from nas.core.settings import Settings
from nas.core.store import Store
from nas.core.tokens import issue_token
from tests.support.owners import OWNER, bearer

EXAMPLES_PER_OPERATION = 30


def test_api_holds_its_schema(settings: Settings, store: Store) -> None:
    # Schemathesis also calls every route without a token, far past the refused tokens an
    # address may send.
    unlimited = settings.model_copy(
        update={
            "rate_limit_per_minute": 1e9,
            "rate_limit_burst": 10**9,
            "auth_failures_per_minute": 1e9,
            "auth_failures_burst": 10**9,
        }
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(unlimited, store))
    headers = bearer(issue_token(store, OWNER, admin=True).secret)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        def holds(case: schemathesis.Case) -> None:
            # Schema-valid bodies may still be refused for reasons a schema cannot express
            # (the dataset folder must exist inside a data root): acceptance is not required.
            case.call_and_validate(
                headers=headers, excluded_checks=[checks.positive_data_acceptance]
            )

        holds()
