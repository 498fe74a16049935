"""The contract's job endpoints: create, list, read, delete."""

from __future__ import annotations

from typing import Any, get_args

from fastapi import Request
from starlette.datastructures import QueryParams
from starlette.responses import Response

from orchestrator.auth.deps import Reader, Writer
from orchestrator.db.changelog import collection_revision
from orchestrator.db.idempotency import IdempotentRequest
from orchestrator.db.keyset import Position
from orchestrator.errors import Forbidden, NotFound, PreconditionFailed, Unprocessable
from orchestrator.http.etag import if_match_version
from orchestrator.http.idempotency import create_response
from orchestrator.http.lists import (
    MAX_LIMIT,
    PageRequest,
    page_request,
    serve_list,
    single_param,
)
from orchestrator.http.responses import conditional_get, data_response
from orchestrator.http.routing import Routes
from orchestrator.jobs.queries import create_job, delete_job, get_job, list_jobs
from orchestrator.jobs.records import JobStatus, StoredJob
from orchestrator.jobs.schemas import JobCreate
from orchestrator.services import services_of
from orchestrator.text import storable

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


@router.post(JOBS, status_code=201, response_model=None, summary="Create a job")
async def post_job(body: JobCreate, request: Request, user: Writer) -> Response:
    db = services_of(request).db

    async def create(idempotency: IdempotentRequest | None) -> StoredJob:
        return await create_job(
            db,
            title=body.title,
            description=body.description,
            created_by=user.username,
            queue=body.queue,
            payload=body.payload,
            priority=body.priority,
            max_attempts=body.max_attempts,
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


FILTERS = frozenset({"status", "queue", "search", "order"})


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
    services = services_of(request)
    db = services.db

    async def read(page: PageRequest) -> tuple[list[dict[str, Any]], Position | None]:
        return await list_jobs(
            db,
            status=status,
            queue=queue,
            search=search,
            newest_first=order == "desc",
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
    return await serve_list(
        request,
        cache=services.list_cache,
        revision=await collection_revision(db, "jobs"),
        key=("jobs", status, queue, search, order),
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
