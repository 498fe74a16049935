"""Worker routes: claim a job, heartbeat, complete, fail or release it; cancel a job."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from orchestrator.auth.deps import WorkerRole, Writer
from orchestrator.errors import Unprocessable
from orchestrator.http.rate_limit import limited_as
from orchestrator.http.responses import data_response
from orchestrator.http.routing import Routes
from orchestrator.jobs.leases import (
    cancel_job,
    complete_job,
    fail_job,
    heartbeat,
    release_job,
)
from orchestrator.jobs.schemas import whole_number
from orchestrator.representation import canonical_json, etag_for
from orchestrator.services import services_of

router = Routes(tags=["workers"])
# A worker makes two writes per job plus heartbeats: its calls have their own, larger budget.
worker_call = limited_as("workers")

MAX_RESULT_BYTES = 64 * 1024
QueueName = Annotated[str, StringConstraints(min_length=1, max_length=100)]

# strict: a boolean is not a number of seconds (lax mode would read true as 1).
LeaseSeconds = Annotated[float, Field(ge=1, le=3600, strict=True)]
# A lease's fencing token, as the claim gave it: never a boolean or a string (strict), and 4.0
# is 4 (JSON Schema's "integer" does not tell them apart). At most 2^53 - 1: every integer up
# to there is exact as a JSON number in any client (JavaScript's safe range), so a number
# near the bound means the same to the client, to a schema validator and to us; a token of
# over 64 bits would not even bind to a statement. A token grows by one per claim of a job.
MAX_TOKEN = 2**53 - 1
FencingToken = Annotated[int, Field(ge=0, le=MAX_TOKEN, strict=True), BeforeValidator(whole_number)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClaimRequest(_Strict):
    queues: list[QueueName] = Field(
        default_factory=lambda: ["default"], min_length=1, max_length=50
    )
    lease_seconds: LeaseSeconds = 30
    worker: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    wait: Annotated[float, Field(ge=0, le=30, strict=True)] = 0


class HeartbeatRequest(_Strict):
    token: FencingToken
    lease_seconds: LeaseSeconds = 30


class CompleteRequest(_Strict):
    token: FencingToken
    result: Any = None


class FailRequest(_Strict):
    token: FencingToken
    error: str = Field(default="failed", max_length=10_000)
    retry: bool = True


class ReleaseRequest(_Strict):
    token: FencingToken


async def _set_on_disconnect(request: Request, gone: asyncio.Event) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
    gone.set()


def _json(body: dict[str, Any], status: int = 200) -> Response:
    data = canonical_json(body)
    return data_response(data, etag_for(data), status=status)


@router.post(
    "/api/v1/jobs/claim",
    responses={200: {"description": "A job and its lease"}, 204: {"description": "No job"}},
)
@worker_call
async def claim(body: ClaimRequest, request: Request, user: WorkerRole) -> Response:
    """Take the next due job of `queues`, waiting up to `wait` seconds for one."""
    services = services_of(request)
    wait = min(body.wait, services.settings.claim_max_wait_seconds)
    gone = asyncio.Event()
    # A client that stops waiting (a worker shutting down) closes its connection: stop
    # waiting for work on its behalf too.
    watch = asyncio.ensure_future(_set_on_disconnect(request, gone)) if wait > 0 else None
    try:
        claimed = await services.claim_waiters.claim(
            db=services.db,
            queues=list(dict.fromkeys(body.queues)),
            lease_seconds=body.lease_seconds,
            worker=body.worker or user.username,
            wait=wait,
            abandoned=gone if watch is not None else None,
        )
    finally:
        if watch is not None:
            watch.cancel()
    if claimed is None:
        return Response(status_code=204)
    services.metrics.job_claimed(claimed.job.data)
    # The job is spliced in as the bytes the transition already made (canonical, sorted).
    return _json({"job": orjson.Fragment(claimed.job.body), "lease": claimed.lease.body()})


@router.post("/api/v1/jobs/{job_id:id}/heartbeat")
@worker_call
async def extend_lease(
    job_id: str, body: HeartbeatRequest, request: Request, _user: WorkerRole
) -> Response:
    """Extend the lease; `cancel_requested` tells the worker to stop."""
    beat = await heartbeat(
        db=services_of(request).db,
        job_id=job_id,
        token=body.token,
        lease_seconds=body.lease_seconds,
    )
    return _json(
        {
            "id": beat.job_id,
            "status": beat.status,
            "cancel_requested": beat.cancel_requested,
            "lease": beat.lease.body(),
        }
    )


@router.post("/api/v1/jobs/{job_id:id}/complete")
@worker_call
async def complete(
    job_id: str, body: CompleteRequest, request: Request, _user: WorkerRole
) -> Response:
    """Record success and the job's result."""
    if len(canonical_json(body.result)) > MAX_RESULT_BYTES:
        raise Unprocessable(details=[{"field": "result", "reason": "at most 64 KiB of JSON"}])
    services = services_of(request)
    job = await complete_job(db=services.db, job_id=job_id, token=body.token, result=body.result)
    services.metrics.job_completed(job.data)
    return data_response(job.body, job.etag)


@router.post("/api/v1/jobs/{job_id:id}/fail")
@worker_call
async def fail(job_id: str, body: FailRequest, request: Request, _user: WorkerRole) -> Response:
    """Record a failure: retried after a backoff while attempts remain, unless `retry` is false."""
    services = services_of(request)
    job = await fail_job(
        db=services.db,
        job_id=job_id,
        token=body.token,
        error=body.error,
        retry=body.retry,
        backoff_base=services.settings.retry_backoff_seconds,
        backoff_cap=services.settings.retry_backoff_max_seconds,
    )
    services.metrics.job_failed(job.data)
    return data_response(job.body, job.etag)


@router.post("/api/v1/jobs/{job_id:id}/release")
@worker_call
async def release(
    job_id: str, body: ReleaseRequest, request: Request, _user: WorkerRole
) -> Response:
    """Give the job back unfinished (a worker shutting down); the attempt is not counted."""
    job = await release_job(db=services_of(request).db, job_id=job_id, token=body.token)
    return data_response(job.body, job.etag)


@router.post(
    "/api/v1/jobs/{job_id:id}/cancel",
    responses={202: {"description": "Cancellation requested from the running worker"}},
)
async def cancel(job_id: str, request: Request, _user: Writer) -> Response:
    """Cancel a pending job now, or ask the worker of a running one to stop."""
    job = await cancel_job(db=services_of(request).db, job_id=job_id)
    return data_response(job.body, job.etag, status=200 if job.status == "cancelled" else 202)
