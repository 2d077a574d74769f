"""Searches: submit, list, inspect, cancel, extend, leaderboard."""

from __future__ import annotations

import contextlib
import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, status

from nas.api.auth import Caller, CallerDep
from nas.api.conditional import NOT_MODIFIED, Revalidated, json_answer, revalidated
from nas.api.cursor import decode_cursor, encode_cursor
from nas.api.deps import SearchDep, SettingsDep, StoreDep, search_not_found
from nas.api.leaderboard_csv import leaderboard_csv
from nas.api.rendered import Rendered
from nas.api.schemas import (
    Leaderboard,
    SearchList,
    SearchOut,
    TrialOut,
    error_responses,
    final_epochs_by_trial,
)
from nas.core.caps import check_caps
from nas.core.extension import ExtensionRequest, extend, extension_refusal
from nas.core.specs import SearchSpec
from nas.core.store import (
    IdempotencyConflictError,
    QueueFullError,
    SearchRecord,
    SearchStatus,
    StaleSearchError,
    Store,
)
from nas.core.store.ranking import leaderboard
from nas.core.submission import check_submission

router = APIRouter(prefix="/v1/searches", tags=["searches"], responses=error_responses(503))

# A 304 is answered, and a kept rendering served, before the search is read.
SearchRequest = Annotated[Revalidated, Depends(revalidated("search"))]
LeaderboardRequest = Annotated[Revalidated, Depends(revalidated("leaderboard"))]
CsvRequest = Annotated[Revalidated, Depends(revalidated("leaderboard.csv"))]
IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=255,
        description="Repeat the request safely: the same key and body get the search the "
        "first one made, with an Idempotent-Replayed header.",
    ),
]


async def submitted_body_hash(request: Request) -> str:
    """SHA-256 of the JSON body as the client sent it, keys sorted and spacing dropped.

    Not of the validated spec: an upgrade that adds a field with a default to the spec would
    turn a client's retry of a submit made before it into a conflict.
    """
    body = await request.body()
    # A body that is not JSON gets a 422 from FastAPI: the route never uses its hash.
    with contextlib.suppress(ValueError):
        body = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(body).hexdigest()


def callers_key(caller: Caller, idempotency_key: str | None) -> str | None:
    """The key as stored: keys are the caller's own, and the same key from another owner
    is another request."""
    if not idempotency_key:
        return None
    return hashlib.sha256(f"{caller.owner}\0{idempotency_key}".encode()).hexdigest()


def queue_full(full: QueueFullError) -> HTTPException:
    """The 429 of an owner whose queue is full."""
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        detail=f"{full.owner} already has {full.limit} queued searches, the most allowed "
        "(NAS_LIMIT_QUEUED_PER_OWNER); wait for one to start or cancel one",
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409, 429),
)
def submit_search(
    spec: SearchSpec,
    store: StoreDep,
    settings: SettingsDep,
    caller: CallerDep,
    response: Response,
    request_hash: Annotated[str, Depends(submitted_body_hash)],
    idempotency_key: IdempotencyKey = None,
) -> SearchOut:
    """Queue an architecture search of the caller; malformed specs, unusable datasets and
    budgets over the service's caps get a 422, a full queue of the caller's a 429."""
    key = callers_key(caller, idempotency_key)
    try:
        if key and (earlier := store.find_submission(key, request_hash)):
            response.headers["Idempotent-Replayed"] = "true"
            return SearchOut.of(earlier.search)
        check_caps(spec, settings)
        checked = check_submission(
            spec,
            settings.resolved_data_roots(),
            settings.data_buckets,
            settings.submit_scan_entries,
        )
        submission = store.create_search(
            checked.model_dump(mode="json"),
            trials_planned=checked.tuner.planned_trials(),
            owner=caller.owner,
            max_queued=settings.limit_queued_per_owner,
            idempotency_key=key,
            request_hash=request_hash,
        )
    except IdempotencyConflictError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from None
    except QueueFullError as full:
        raise queue_full(full) from None
    if not submission.created:
        response.headers["Idempotent-Replayed"] = "true"
    return SearchOut.of(submission.search)


@router.get("")
def list_searches(
    store: StoreDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None,
        Query(
            max_length=200,
            description="A page's next_cursor: the page after it, whatever was submitted since.",
        ),
    ] = None,
    offset: Annotated[
        int,
        Query(ge=0, le=1_000_000_000, description="Searches to skip (after the cursor, if any)."),
    ] = 0,
) -> SearchList:
    """The caller's searches (everyone's for an admin), newest first, a page at a time:
    follow ``next_cursor`` (null on the last page) to the next one."""
    owner = None if caller.admin else caller.owner
    after = None if cursor is None else decode_cursor(cursor)
    page = store.list_searches(limit=limit, offset=offset, after=after, owner=owner)
    return SearchList(
        items=[SearchOut.of(search) for search in page.items],
        total=page.total,
        limit=limit,
        offset=offset,
        next_cursor=None if page.next_key is None else encode_cursor(page.next_key),
    )


@router.get("/{search_id}", response_model=SearchOut, responses=error_responses(404) | NOT_MODIFIED)
def get_search(request: SearchRequest) -> Response:
    """Status, progress, best trial so far and the accelerator used. Send the ETag back in
    ``If-None-Match`` to get a 304 while nothing changed."""
    return request.answer(lambda search: json_answer(SearchOut.of(search)))


def _ranked_trials(search: SearchRecord, store: Store) -> list[TrialOut]:
    ranked = leaderboard(store.list_trials(search.id), search.spec["objective"])
    final_epochs = final_epochs_by_trial(search)
    return [TrialOut.of(trial, rank, final_epochs.get(trial.trial_id)) for rank, trial in ranked]


@router.get(
    "/{search_id}/leaderboard",
    response_model=Leaderboard,
    responses=error_responses(404) | NOT_MODIFIED,
)
def get_leaderboard(request: LeaderboardRequest, store: StoreDep) -> Response:
    """Every trial ranked by the objective, with per-epoch history; updated every epoch.
    Send the ETag back in ``If-None-Match`` to get a 304 while nothing changed."""
    return request.answer(
        lambda search: json_answer(
            Leaderboard(
                search_id=search.id,
                objective=search.spec["objective"],
                trials=_ranked_trials(search, store),
            )
        )
    )


@router.get(
    "/{search_id}/leaderboard.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "The leaderboard as CSV"}}
    | error_responses(404)
    | NOT_MODIFIED,
)
def get_leaderboard_csv(request: CsvRequest, store: StoreDep) -> Response:
    """The leaderboard as a CSV download: rank, trial_id, status, score, test_accuracy,
    params, epochs, seconds, stop_reason, then one ``hp_NAME`` column per hyperparameter."""
    return request.answer(
        lambda search: Rendered(
            leaderboard_csv(_ranked_trials(search, store)).encode(),
            "text/csv; charset=utf-8",
            {"Content-Disposition": f'attachment; filename="{search.id}-leaderboard.csv"'},
        )
    )


@router.post(
    "/{search_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(404, 409),
)
def cancel_search(search: SearchDep, store: StoreDep) -> SearchOut:
    """Cancel a queued search at once; a running one stops at the next heartbeat."""
    if search.status in {SearchStatus.SUCCEEDED, SearchStatus.FAILED}:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"search already {search.status.value}"
        )
    cancelled = store.request_cancel(search.id)
    if cancelled is None:  # gone since it was read
        raise search_not_found(search.id)
    return SearchOut.of(cancelled)


@router.post(
    "/{search_id}/extend",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(404, 409, 429),
)
def extend_search(
    more: ExtensionRequest,
    search: SearchDep,
    store: StoreDep,
    settings: SettingsDep,
    caller: CallerDep,
    response: Response,
    request_hash: Annotated[str, Depends(submitted_body_hash)],
    idempotency_key: IdempotencyKey = None,
) -> SearchOut:
    """Give a search that ended ``max_trials`` more trials and/or ``budget.seconds`` more
    seconds: it goes back to the queue, and the worker that claims it continues its tuner
    where it stopped, keeping every trial; the best architectures are trained to the end and
    exported again. A search that has not ended, or failed for another reason than every
    trial failing, gets a 409; a request it cannot take a 422 naming the field."""
    key = callers_key(caller, idempotency_key)
    try:
        if key and (earlier := store.find_extension(search.id, key, request_hash)):
            response.headers["Idempotent-Replayed"] = "true"
            return SearchOut.of(earlier)
        if (refusal := extension_refusal(search)) is not None:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=refusal)
        extended = extend(search, more, settings, datetime.now(UTC))
        outcome = store.extend_search(
            search.id,
            revision=search.revision,
            spec=extended.spec.model_dump(mode="json"),
            trials_planned=extended.trials_planned,
            extension=extended.extension,
            max_queued=settings.limit_queued_per_owner,
            idempotency_key=key,
            request_hash=request_hash,
        )
    except (IdempotencyConflictError, StaleSearchError) as error:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from None
    except QueueFullError as full:
        raise queue_full(full) from None
    if outcome is None:  # gone since it was read
        raise search_not_found(search.id)
    if not outcome.created:
        response.headers["Idempotent-Replayed"] = "true"
    return SearchOut.of(outcome.search)
