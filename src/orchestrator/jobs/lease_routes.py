"""Worker routes: claim jobs, heartbeat, complete, fail or release them, one or many per call;
cancel a job."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from orchestrator.auth.deps import Principal, WorkerRole, Writer
from orchestrator.errors import ApiError, Unprocessable
from orchestrator.http.rate_limit import limited_as
from orchestrator.http.resource_ids import ResourceIdConvertor
from orchestrator.http.responses import data_response
from orchestrator.http.routing import Routes
from orchestrator.jobs.leases import (
    Backoff,
    Claim,
    ClaimSpec,
    Heartbeat,
    Holder,
    LeaseRef,
    Outcome,
    Progress,
    Report,
    Verb,
    cancel_job,
    heartbeat,
    report,
)
from orchestrator.jobs.logs import MAX_LINE_BYTES, MAX_LINES_PER_CALL, append_logs
from orchestrator.jobs.records import StoredJob
from orchestrator.jobs.schemas import whole_number
from orchestrator.representation import canonical_json, etag_for
from orchestrator.services import Services, services_of
from orchestrator.text import check_storable_json, storable

router = Routes(tags=["workers"])
worker_call = limited_as("workers")

MAX_RESULT_BYTES = 64 * 1024
MAX_BATCH = 100
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
# The lease's secret as the claim gave it; any other text is simply a wrong secret (409).
LeaseSecret = Annotated[str, StringConstraints(min_length=1, max_length=200)]
JobId = Annotated[
    str, StringConstraints(pattern=f"^{ResourceIdConvertor.regex}$"), AfterValidator(str.lower)
]


MAX_PROGRESS_MESSAGE = 1_000
Fraction = Annotated[float, Field(ge=0, le=1, strict=True, allow_inf_nan=False)]
ProgressMessage = Annotated[
    str, StringConstraints(max_length=MAX_PROGRESS_MESSAGE), AfterValidator(storable)
]


def _line_bytes(line: str) -> str:
    if len(line.encode()) > MAX_LINE_BYTES:
        raise ValueError(f"a log line has at most {MAX_LINE_BYTES} bytes of UTF-8")
    return line


LogLine = Annotated[
    str,
    StringConstraints(max_length=MAX_LINE_BYTES),
    AfterValidator(storable),
    AfterValidator(_line_bytes),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClaimRequest(_Strict):
    queues: list[QueueName] = Field(
        default_factory=lambda: ["default"], min_length=1, max_length=50
    )
    lease_seconds: LeaseSeconds = 30
    worker: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    wait: Annotated[float, Field(ge=0, le=30, strict=True)] = 0
    max_jobs: (
        Annotated[int, Field(ge=1, le=MAX_BATCH, strict=True), BeforeValidator(whole_number)] | None
    ) = Field(
        default=None,
        description='Claim up to this many jobs; the answer is then `{"claims": [...]}`',
    )


class _Held(_Strict):
    token: FencingToken
    secret: LeaseSecret


class _Progress(_Strict):
    progress: Fraction | None = Field(
        default=None, description="How far the job is, from 0 to 1 (kept when not given)"
    )
    message: ProgressMessage | None = Field(
        default=None, description="What the job is doing (kept when not given)"
    )

    def told(self) -> Progress | None:
        if self.progress is None and self.message is None:
            return None
        return Progress(fraction=self.progress, message=self.message)


class HeartbeatRequest(_Held, _Progress):
    lease_seconds: LeaseSeconds = 30


class CompleteRequest(_Held):
    result: Any = None
    claim: ClaimRequest | None = Field(
        default=None, description="Also claim the next jobs: the answer is `{job, claims}`"
    )


class FailRequest(_Held):
    error: str = Field(default="failed", max_length=10_000)
    retry: bool = True
    claim: ClaimRequest | None = Field(
        default=None, description="Also claim the next jobs: the answer is `{job, claims}`"
    )


class ReleaseRequest(_Held):
    pass


class LogRequest(_Held):
    lines: list[LogLine] = Field(
        min_length=1,
        max_length=MAX_LINES_PER_CALL,
        description=f"Lines to append, each at most {MAX_LINE_BYTES} bytes of UTF-8",
    )


class LeaseItem(_Held):
    id: JobId


class HeartbeatItem(LeaseItem, _Progress):
    pass


class HeartbeatsRequest(_Strict):
    leases: list[HeartbeatItem] = Field(min_length=1, max_length=MAX_BATCH)
    lease_seconds: LeaseSeconds = 30


class CompleteItem(LeaseItem):
    result: Any = None


class FailItem(LeaseItem):
    error: str = Field(default="failed", max_length=10_000)
    retry: bool = True


class ReportRequest(_Strict):
    complete: list[CompleteItem] = Field(default_factory=list, max_length=MAX_BATCH)
    fail: list[FailItem] = Field(default_factory=list, max_length=MAX_BATCH)
    release: list[LeaseItem] = Field(default_factory=list, max_length=MAX_BATCH)
    claim: ClaimRequest | None = None


# What the answers look like, for the OpenAPI document (the routes write their bodies
# themselves, serialised once).
JobBody = Annotated[dict[str, Any], Field(description="The job, as GET /api/v1/jobs/{id} shows it")]


class LeaseAnswer(BaseModel):
    token: int = Field(description="The fencing token: it grows with every claim of the job")
    secret: str = Field(description="Proof of holding the lease; send it with every lease call")
    expires_at: str


class ClaimAnswer(BaseModel):
    job: JobBody
    lease: LeaseAnswer


class ClaimsAnswer(BaseModel):
    claims: list[ClaimAnswer]


class ItemError(BaseModel):
    type: str
    code: int
    message: str


class ReportOutcome(BaseModel):
    id: str
    code: int = Field(description="200, or the status of this report's refusal alone")
    job: JobBody | None = Field(default=None, description="With 200: the job as it now is")
    error: ItemError | None = Field(default=None, description="Otherwise: why")


class ReportAnswer(BaseModel):
    complete: list[ReportOutcome]
    fail: list[ReportOutcome]
    release: list[ReportOutcome]
    claims: list[ClaimAnswer]


class ReportedAndClaimed(BaseModel):
    job: JobBody
    claims: list[ClaimAnswer]


class LogLineAnswer(BaseModel):
    n: int = Field(description="The line's number: 1 for the job's first line, then one more each")
    line: str
    created_at: str


class LogsAppended(BaseModel):
    items: list[LogLineAnswer]


class HeartbeatAnswer(BaseModel):
    id: str
    status: str
    cancel_requested: bool = Field(description="True: the job was cancelled; stop it")
    lease: LeaseAnswer


class HeartbeatOutcome(BaseModel):
    id: str
    code: int = Field(description="200, or the status of this lease's refusal alone")
    status: str | None = None
    cancel_requested: bool | None = None
    lease: LeaseAnswer | None = None
    error: ItemError | None = None


class HeartbeatsAnswer(BaseModel):
    leases: list[HeartbeatOutcome]


_LEASE_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "The lease belongs to another account (or the role may not do this)"},
    404: {"description": "No such job"},
    409: {"description": "The lease is no longer held (stale token or wrong secret)"},
}


async def _set_on_disconnect(request: Request, gone: asyncio.Event) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
    gone.set()


def _holder(user: Principal) -> Holder:
    return Holder(account=user.id, admin=user.role == "admin")


def _spec(body: ClaimRequest, user: Principal, *, default_jobs: int = 1) -> ClaimSpec:
    return ClaimSpec(
        queues=tuple(dict.fromkeys(body.queues)),
        max_jobs=body.max_jobs or default_jobs,
        lease_seconds=body.lease_seconds,
        worker=body.worker or user.username,
    )


def _backoff(services: Services) -> Backoff:
    settings = services.settings
    return Backoff(base=settings.retry_backoff_seconds, cap=settings.retry_backoff_max_seconds)


def _result(value: Any) -> str:
    """The result's canonical JSON, or ValueError saying why it cannot be stored."""
    check_storable_json(value)
    try:
        data = canonical_json(value)
    except orjson.JSONEncodeError:
        raise ValueError("is not representable as JSON (integers are limited to 64 bits)") from None
    if len(data) > MAX_RESULT_BYTES:
        raise ValueError("must be at most 64 KiB of JSON")
    return data.decode()


def _json(body: Any, *, status: int = 200) -> Response:
    data = canonical_json(body)
    return data_response(data, etag_for(data), status=status)


def _job(job: StoredJob, *, status: int = 200) -> Response:
    return data_response(job.body, job.etag, status=status)


def _error(error: ApiError) -> dict[str, Any]:
    return {"type": "http_exception", "code": error.status_code, "message": error.message}


def _outcome(job_id: str, outcome: Outcome) -> dict[str, Any]:
    if isinstance(outcome, ApiError):
        return {"id": job_id, "code": outcome.status_code, "error": _error(outcome)}
    return {"id": job_id, "code": 200, "job": orjson.Fragment(outcome.body)}


def _count(services: Services, verb: Verb, outcomes: Sequence[Outcome]) -> None:
    metrics = services.metrics
    for outcome in outcomes:
        if isinstance(outcome, StoredJob):
            if verb == "complete":
                metrics.job_completed(outcome.data)
            elif verb == "fail":
                metrics.job_failed(outcome.data)


def _claimed(services: Services, claims: Sequence[Claim]) -> None:
    for claim in claims:
        services.metrics.job_claimed(claim.job.data)


async def _wait_for_jobs(
    request: Request, services: Services, user: Principal, spec: ClaimSpec, wait: float
) -> list[Claim]:
    """Claim with `wait`: jobs as soon as there are some, none once `wait` has passed."""
    gone = asyncio.Event()
    # A client that stops waiting (a worker shutting down) closes its connection: stop
    # waiting for work on its behalf too.
    watch = asyncio.ensure_future(_set_on_disconnect(request, gone)) if wait > 0 else None
    try:
        claims = await services.claim_waiters.claim(
            db=services.db,
            keys=services.lease_keys,
            holder=_holder(user),
            spec=spec,
            wait=wait,
            abandoned=gone if watch is not None else None,
        )
    finally:
        if watch is not None:
            watch.cancel()
    _claimed(services, claims)
    return claims


def _claims_body(claims: Sequence[Claim]) -> list[dict[str, Any]]:
    return [claim.body() for claim in claims]


@router.post(
    "/api/v1/jobs/claim",
    responses={
        200: {
            "description": 'A job and its lease; with `max_jobs`, `{"claims": [...]}`',
            "model": ClaimAnswer | ClaimsAnswer,
        },
        204: {"description": "No job"},
    },
)
@worker_call
async def claim(body: ClaimRequest, request: Request, user: WorkerRole) -> Response:
    """Take the next due job of `queues` (up to `max_jobs` of them), waiting up to `wait`
    seconds for one."""
    services = services_of(request)
    wait = min(body.wait, services.settings.claim_max_wait_seconds)
    claims = await _wait_for_jobs(request, services, user, _spec(body, user), wait)
    if not claims:
        return Response(status_code=204)
    if body.max_jobs is None:
        return _json(claims[0].body())
    return _json({"claims": _claims_body(claims)})


async def _report_one(
    request: Request,
    user: Principal,
    item: Report,
    next_jobs: ClaimRequest | None,
) -> Response:
    """A single-job report; with `next_jobs`, also a claim, answered as `{job, claims}`."""
    services = services_of(request)
    spec = _spec(next_jobs, user) if next_jobs is not None else None
    [outcome], claims = await report(
        db=services.db,
        keys=services.lease_keys,
        holder=_holder(user),
        reports=[item],
        backoff=_backoff(services),
        claim=spec,
    )
    if isinstance(outcome, ApiError):
        raise outcome
    _count(services, item.verb, [outcome])
    if next_jobs is None or spec is None:
        return _job(outcome)
    _claimed(services, claims)
    wait = min(next_jobs.wait, services.settings.claim_max_wait_seconds)
    if not claims and wait > 0:
        claims = await _wait_for_jobs(request, services, user, spec, wait)
    return _json({"job": orjson.Fragment(outcome.body), "claims": _claims_body(claims)})


def _lease(job_id: str, body: _Held) -> LeaseRef:
    return LeaseRef(job_id=job_id, token=body.token, secret=body.secret)


@router.post(
    "/api/v1/jobs/{job_id:id}/heartbeat",
    responses={
        200: {"model": HeartbeatAnswer, "description": "The lease, extended"},
        **_LEASE_ERRORS,
    },
)
@worker_call
async def extend_lease(
    job_id: str, body: HeartbeatRequest, request: Request, user: WorkerRole
) -> Response:
    """Extend the lease and report `progress` and `message`; `cancel_requested` tells the
    worker to stop."""
    services = services_of(request)
    [beat] = await heartbeat(
        db=services.db,
        keys=services.lease_keys,
        holder=_holder(user),
        leases=[_lease(job_id, body)],
        lease_seconds=body.lease_seconds,
        progress=[body.told()],
    )
    if isinstance(beat, ApiError):
        raise beat
    return _json(beat.body())


@router.post(
    "/api/v1/jobs/{job_id:id}/complete",
    responses={
        200: {
            "model": JobBody | ReportedAndClaimed,
            "description": "The job; with `claim`, `{job, claims}`",
        },
        **_LEASE_ERRORS,
    },
)
@worker_call
async def complete(
    job_id: str, body: CompleteRequest, request: Request, user: WorkerRole
) -> Response:
    """Record success and the job's result; with `claim`, also take the next jobs."""
    try:
        result = _result(body.result)
    except ValueError as exc:
        raise Unprocessable(details=[{"field": "result", "reason": str(exc)}]) from None
    item = Report(lease=_lease(job_id, body), verb="complete", result=result)
    return await _report_one(request, user, item, body.claim)


@router.post(
    "/api/v1/jobs/{job_id:id}/fail",
    responses={
        200: {
            "model": JobBody | ReportedAndClaimed,
            "description": "The job; with `claim`, `{job, claims}`",
        },
        **_LEASE_ERRORS,
    },
)
@worker_call
async def fail(job_id: str, body: FailRequest, request: Request, user: WorkerRole) -> Response:
    """Record a failure: retried after a backoff while attempts remain, unless `retry` is
    false; with `claim`, also take the next jobs."""
    item = Report(lease=_lease(job_id, body), verb="fail", error=body.error, retry=body.retry)
    return await _report_one(request, user, item, body.claim)


@router.post(
    "/api/v1/jobs/{job_id:id}/release",
    responses={200: {"model": JobBody, "description": "The job, pending again"}, **_LEASE_ERRORS},
)
@worker_call
async def release(
    job_id: str, body: ReleaseRequest, request: Request, user: WorkerRole
) -> Response:
    """Give the job back unfinished (a worker shutting down); the attempt is not counted."""
    return await _report_one(
        request, user, Report(lease=_lease(job_id, body), verb="release"), None
    )


@router.post(
    "/api/v1/jobs/{job_id:id}/logs",
    responses={
        200: {"model": LogsAppended, "description": "The lines as stored, with their numbers"},
        **_LEASE_ERRORS,
    },
)
@worker_call
async def append_job_logs(
    job_id: str, body: LogRequest, request: Request, user: WorkerRole
) -> Response:
    """Append up to 100 log lines to the running job whose lease this is; the job keeps its
    last 10,000 lines, and the lines reach the change feed's `job_logs` collection."""
    services = services_of(request)
    items = await append_logs(
        db=services.db,
        keys=services.lease_keys,
        holder=_holder(user),
        lease=_lease(job_id, body),
        lines=body.lines,
    )
    return _json({"items": items})


@router.post(
    "/api/v1/jobs/heartbeat",
    responses={
        200: {"model": HeartbeatsAnswer, "description": "Each lease's answer, in the order asked"}
    },
)
@worker_call
async def extend_leases(body: HeartbeatsRequest, request: Request, user: WorkerRole) -> Response:
    """Extend many leases at once; each answer has its own `code`: 200 with the lease and
    `cancel_requested`, or the error of that lease alone (404, 403, 409)."""
    services = services_of(request)
    beats = await heartbeat(
        db=services.db,
        keys=services.lease_keys,
        holder=_holder(user),
        leases=[_lease(item.id, item) for item in body.leases],
        lease_seconds=body.lease_seconds,
        progress=[item.told() for item in body.leases],
    )
    answers = []
    for item, beat in zip(body.leases, beats, strict=True):
        if isinstance(beat, Heartbeat):
            answers.append({"code": 200, **beat.body()})
        else:
            answers.append({"id": item.id, "code": beat.status_code, "error": _error(beat)})
    return _json({"leases": answers})


@router.post(
    "/api/v1/jobs/report",
    responses={
        200: {"model": ReportAnswer, "description": "Each report's outcome, and the jobs claimed"}
    },
)
@worker_call
async def report_jobs(body: ReportRequest, request: Request, user: WorkerRole) -> Response:
    """Complete, fail and release many jobs, and claim the next ones, in one transaction; each
    report has its own outcome (`code` 200 with the job, or that report's error alone)."""
    services = services_of(request)
    reports: list[Report] = []
    refused: dict[int, Outcome] = {}
    for item in body.complete:
        try:
            result = _result(item.result)
        except ValueError as exc:
            refused[len(reports)] = Unprocessable(f"result {exc}")
            result = None
        reports.append(Report(lease=_lease(item.id, item), verb="complete", result=result))
    for failed in body.fail:
        reports.append(
            Report(
                lease=_lease(failed.id, failed),
                verb="fail",
                error=failed.error,
                retry=failed.retry,
            )
        )
    reports.extend(Report(lease=_lease(item.id, item), verb="release") for item in body.release)
    spec = _spec(body.claim, user) if body.claim is not None else None
    valid = [n for n in range(len(reports)) if n not in refused]
    applied, claims = await report(
        db=services.db,
        keys=services.lease_keys,
        holder=_holder(user),
        reports=[reports[n] for n in valid],
        backoff=_backoff(services),
        claim=spec,
    )
    outcomes = dict(refused)
    outcomes.update(zip(valid, applied, strict=True))
    answers: dict[str, list[dict[str, Any]]] = {
        verb: [] for verb in ("complete", "fail", "release")
    }
    for n, reported in enumerate(reports):
        answers[reported.verb].append(_outcome(reported.lease.job_id, outcomes[n]))
        _count(services, reported.verb, [outcomes[n]])
    _claimed(services, claims)
    if body.claim is not None and spec is not None and not claims:
        wait = min(body.claim.wait, services.settings.claim_max_wait_seconds)
        if wait > 0:
            claims = await _wait_for_jobs(request, services, user, spec, wait)
    return _json({**answers, "claims": _claims_body(claims)})


@router.post(
    "/api/v1/jobs/{job_id:id}/cancel",
    responses={
        202: {"description": "Cancellation requested from the running worker"},
        403: {"description": "Only the job's creator or an admin may cancel it"},
    },
)
async def cancel(job_id: str, request: Request, user: Writer) -> Response:
    """Cancel a waiting or pending job now (and the jobs waiting on it), or ask the worker of a
    running one to stop (the job's creator or an admin)."""
    job = await cancel_job(
        db=services_of(request).db,
        job_id=job_id,
        username=user.username,
        admin=user.role == "admin",
    )
    return _job(job, status=200 if job.status == "cancelled" else 202)
