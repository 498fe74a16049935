"""The contract's job endpoints: create, list, read, delete; retry and bulk actions."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, get_args
from urllib.parse import urlencode

from fastapi import Request
from starlette.datastructures import QueryParams
from starlette.responses import Response

from orchestrator.auth.deps import Reader, Writer
from orchestrator.db.changelog import collection_revision
from orchestrator.db.idempotency import IdempotentRequest
from orchestrator.db.keyset import Position
from orchestrator.errors import Forbidden, NotFound, PreconditionFailed, Unprocessable
from orchestrator.http.etag import if_match_version
from orchestrator.http.idempotency import DUPLICATE_OF, create_response
from orchestrator.http.lists import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    ListCache,
    PageRequest,
    page_request,
    refuse_unknown,
    serve_list,
    single_param,
)
from orchestrator.http.responses import conditional_get, data_response
from orchestrator.http.routing import Routes
from orchestrator.jobs.actions import Selection, bulk_action, retry_job
from orchestrator.jobs.logs import list_logs
from orchestrator.jobs.queries import JobSpec, create_job, delete_job, get_job, list_jobs
from orchestrator.jobs.records import JobStatus, StoredJob
from orchestrator.jobs.schemas import BulkRequest, JobCreate, RetryRequest
from orchestrator.representation import canonical_json, etag_for
from orchestrator.services import services_of
from orchestrator.text import storable
from orchestrator.timestamps import utc_instant, utcnow

router = Routes(tags=["jobs"])

JOBS = "/api/v1/jobs"
STATUSES: tuple[str, ...] = get_args(JobStatus)
_CONDITIONAL: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified (If-None-Match matched)"},
    412: {"description": "If-Match did not match"},
}


def _location(job_id: str) -> str:
    return f"{JOBS}/{job_id}"


def _stale(current: StoredJob) -> PreconditionFailed:
    return PreconditionFailed("The job has changed; fetch it again", headers={"ETag": current.etag})


def _instant(text: str | None) -> datetime | None:
    return utc_instant(datetime.fromisoformat(text)) if text is not None else None


@router.post(
    JOBS,
    status_code=201,
    response_model=None,
    responses={
        200: {
            "description": (
                "An unfinished job of the queue already has this `unique_key`: that job, "
                f"its id also in `{DUPLICATE_OF}` (nothing was created)"
            ),
            "headers": {DUPLICATE_OF: {"schema": {"type": "string", "format": "uuid"}}},
        }
    },
    summary="Create a job",
)
async def post_job(body: JobCreate, request: Request, user: Writer) -> Response:
    db = services_of(request).db
    spec = JobSpec(
        title=body.title,
        description=body.description,
        queue=body.queue,
        payload=body.payload,
        priority=body.priority,
        max_attempts=body.max_attempts,
        depends_on=tuple(body.depends_on),
    )

    async def create(idempotency: IdempotentRequest | None) -> StoredJob:
        return await create_job(
            db,
            spec=spec,
            created_by=user.username,
            run_at=_instant(body.run_at),
            delay_seconds=body.delay_seconds,
            unique_key=body.unique_key,
            idempotency=idempotency,
        )

    return await create_response(
        request,
        db,
        user_id=user.id,
        path=JOBS,
        payload=body.model_dump(),
        create=create,
        location=_location,
    )


MAX_SEARCH = 200
MAX_QUEUE = 100
ORDERS = ("asc", "desc")
NO_NUL = "^[^\\u0000]*$"
_LIST_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "status",
        "in": "query",
        "required": False,
        "description": "Only jobs of this status",
        "schema": {"type": "string", "enum": list(STATUSES)},
    },
    {
        "name": "queue",
        "in": "query",
        "required": False,
        "description": "Only jobs of this queue",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_QUEUE, "pattern": NO_NUL},
    },
    {
        "name": "search",
        "in": "query",
        "required": False,
        "description": "Only jobs whose title contains this text, ignoring case",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_SEARCH, "pattern": NO_NUL},
    },
    {
        "name": "scheduled",
        "in": "query",
        "required": False,
        "description": (
            "`true`: only jobs waiting for a future `run_at`; `false`: only jobs already due "
            "(with `status=pending`, the ones a claim may take now)"
        ),
        "schema": {"type": "boolean"},
    },
    {
        "name": "order",
        "in": "query",
        "required": False,
        "description": "`asc`: oldest first (the default); `desc`: newest first",
        "schema": {"type": "string", "enum": list(ORDERS), "default": "asc"},
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": (
            "Page size; without it the whole list is returned. The next page is at "
            "`cursor=<next_cursor>` (also in the `Link` header), with the same filters and order"
        ),
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
    },
]


FILTERS = frozenset({"status", "queue", "search", "order", "scheduled"})


def _text_param(params: QueryParams, name: str, maximum: int) -> str | None:
    value = single_param(params, name)
    if value is None:
        return None
    reason = f"from 1 to {maximum} characters"
    try:
        storable(value)
    except ValueError as exc:
        reason = str(exc)
    else:
        if 1 <= len(value) <= maximum:
            return value
    raise Unprocessable(f"Invalid {name}", details=[{"field": name, "reason": reason}])


@router.get(
    JOBS,
    response_model=None,
    responses=_CONDITIONAL,
    summary="List jobs",
    openapi_extra={"parameters": _LIST_PARAMETERS},
)
async def get_job_list(request: Request, user: Reader) -> Response:
    params = request.query_params
    page = page_request(params, filters=FILTERS)
    status = single_param(params, "status")
    if status is not None and status not in STATUSES:
        raise Unprocessable(
            "Invalid status",
            details=[{"field": "status", "reason": f"one of {', '.join(STATUSES)}"}],
        )
    queue = _text_param(params, "queue", MAX_QUEUE)
    search = _text_param(params, "search", MAX_SEARCH)
    order = single_param(params, "order")
    if order is None:
        order = "asc"
    elif order not in ORDERS:
        raise Unprocessable("Invalid order", details=[{"field": "order", "reason": "asc or desc"}])
    scheduled = single_param(params, "scheduled")
    if scheduled is not None and scheduled not in ("true", "false"):
        raise Unprocessable(
            "Invalid scheduled", details=[{"field": "scheduled", "reason": "true or false"}]
        )
    services = services_of(request)
    db = services.db

    async def read(page: PageRequest) -> tuple[list[dict[str, Any]], Position | None]:
        return await list_jobs(
            db,
            status=status,
            queue=queue,
            search=search,
            newest_first=order == "desc",
            scheduled=None if scheduled is None else scheduled == "true",
            after=page.after,
            limit=page.limit,
        )

    filters = [
        (name, value)
        for name, value in (("status", status), ("queue", queue), ("search", search))
        if value is not None
    ]
    if order != "asc":
        filters.append(("order", order))
    if scheduled is not None:
        filters.append(("scheduled", scheduled))
    return await serve_list(
        request,
        # Which jobs are due changes with the clock, not only with a revision: never cached.
        cache=services.list_cache if scheduled is None else ListCache(),
        revision=await collection_revision(db, "jobs"),
        key=("jobs", status, queue, search, order, scheduled),
        page=page,
        read=read,
        envelope=lambda items: {"jobs": items},
        link_params=filters,
    )


@router.get(
    f"{JOBS}/{{job_id:id}}",
    response_model=None,
    responses={**_CONDITIONAL, 404: {"description": "No such job"}},
    summary="Read a job",
)
async def get_one_job(job_id: str, request: Request, user: Reader) -> Response:
    job = await get_job(services_of(request).db, job_id=job_id)
    if job is None:
        raise NotFound("No such job")
    return conditional_get(request, job.etag) or data_response(job.body, job.etag)


@router.delete(
    f"{JOBS}/{{job_id:id}}",
    status_code=204,
    response_model=None,
    responses={
        403: {"description": "Only the job's creator or an admin may delete it"},
        404: {"description": "No such job"},
        412: {"description": "If-Match is stale; the current ETag is in the response"},
    },
    summary="Delete a job (creator or admin; honours If-Match)",
)
async def delete_one_job(job_id: str, request: Request, user: Writer) -> Response:
    db = services_of(request).db
    current = await get_job(db, job_id=job_id)
    if current is None:
        raise NotFound("No such job")
    if user.role != "admin" and current.created_by != user.username:
        raise Forbidden("Only the job's creator or an admin may delete it")
    expected: int | None = None
    header = request.headers.get("if-match")
    if header is not None:
        star, tags = if_match_version(header)
        if not star:
            if current.etag not in tags:
                raise _stale(current)
            expected = current.version
    if not await delete_job(db, job_id=job_id, expected_version=expected):
        latest = await get_job(db, job_id=job_id)
        if latest is None:
            raise NotFound("No such job")
        raise _stale(latest)
    return Response(status_code=204)


@router.post(
    f"{JOBS}/{{job_id:id}}/retry",
    response_model=None,
    responses={
        403: {"description": "Only the job's creator or an admin may retry it"},
        404: {"description": "No such job"},
        409: {"description": "The job is neither failed nor cancelled"},
    },
    summary="Retry a failed or cancelled job (creator or admin)",
)
async def retry_one_job(
    job_id: str, request: Request, user: Writer, body: RetryRequest | None = None
) -> Response:
    """Back to `pending` with attempts and error reset, at once or at `run_at`."""
    db = services_of(request).db
    current = await get_job(db, job_id=job_id)
    if current is None:
        raise NotFound("No such job")
    if user.role != "admin" and current.created_by != user.username:
        raise Forbidden("Only the job's creator or an admin may retry it")
    run_at = None
    if body is not None:
        run_at = _instant(body.run_at)
        if body.delay_seconds is not None:
            run_at = utcnow() + timedelta(seconds=body.delay_seconds)
    job = await retry_job(db=db, job_id=job_id, run_at=run_at)
    return data_response(job.body, job.etag)


@router.post(
    f"{JOBS}/bulk",
    response_model=None,
    responses={200: {"description": '`{"matched": N, "changed": M}`'}},
    summary="Cancel, retry or delete many jobs (members: their own; admins: all)",
)
async def bulk_jobs(body: BulkRequest, request: Request, user: Writer) -> Response:
    """Each selected job changes exactly as its single-job route would change it."""
    selection = Selection(ids=body.ids)
    if body.filter is not None:
        selection = Selection(
            status=body.filter.status,
            queue=body.filter.queue,
            created_before=_instant(body.filter.created_before),
        )
    outcome = await bulk_action(
        db=services_of(request).db,
        action=body.action,
        selection=selection,
        created_by=None if user.role == "admin" else user.username,
        limit=body.limit,
    )
    data = canonical_json({"matched": outcome.matched, "changed": outcome.changed})
    return data_response(data, etag_for(data))


MAX_LOG_AFTER = 2**63 - 1  # line numbers are PostgreSQL bigints
_LOG_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "after",
        "in": "query",
        "required": False,
        "description": "Only lines numbered above this (0, the default: from the first kept)",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_LOG_AFTER, "default": 0},
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "Lines per page (the next page is at `after=<next_after>`)",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    },
]


def _count_param(params: QueryParams, name: str, low: int, high: int, default: int) -> int:
    raw = single_param(params, name)
    if raw is None:
        return default
    # ASCII digits only, and no longer than the bound (int() of a huge string is slow).
    if raw.isascii() and raw.isdigit() and len(raw) <= len(str(high)) and low <= int(raw) <= high:
        return int(raw)
    raise Unprocessable(
        f"Invalid {name}", details=[{"field": name, "reason": f"an integer from {low} to {high}"}]
    )


@router.get(
    f"{JOBS}/{{job_id:id}}/logs",
    response_model=None,
    responses={
        200: {
            "description": (
                '`{"items": [{"n", "line", "created_at"}], "next_after"}`: the lines, oldest '
                "first; `next_after` is the `after` of the next page (null on the last page)"
            )
        },
        **_CONDITIONAL,
        404: {"description": "No such job"},
    },
    summary="Read a job's log lines",
    openapi_extra={"parameters": _LOG_PARAMETERS},
)
async def get_job_logs(job_id: str, request: Request, user: Reader) -> Response:
    params = request.query_params
    refuse_unknown(params, frozenset({"after", "limit"}))
    after = _count_param(params, "after", 0, MAX_LOG_AFTER, 0)
    limit = _count_param(params, "limit", 1, MAX_LIMIT, DEFAULT_LIMIT)
    page = await list_logs(db=services_of(request).db, job_id=job_id, after=after, limit=limit)
    next_after = page.items[-1]["n"] if page.more else None
    headers = None
    if next_after is not None:
        query = urlencode([("after", next_after), ("limit", limit)])
        headers = {"Link": f'<{request.url.path}?{query}>; rel="next"'}
    data = canonical_json({"items": page.items, "next_after": next_after})
    etag = etag_for(data)
    return conditional_get(request, etag, headers) or data_response(data, etag, headers=headers)
