"""The API's calls, described once for both clients: what to send and how to read the answer.

Each function here is a method of `Client` and of `AsyncClient` under the same name, with the
same signature and docstring (see `http.py`); it only describes a request, it sends nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Final, Generic, Literal, TypeVar
from urllib.parse import quote

R = TypeVar("R")
JobStatus = Literal["waiting", "pending", "running", "succeeded", "failed", "cancelled"]
Role = Literal["admin", "member", "viewer", "worker"]


class _Unset(Enum):
    UNSET = "UNSET"


UNSET: Final = _Unset.UNSET
"""An argument left out (where `None` means something: a task's `description=None` clears it)."""


@dataclass(frozen=True, slots=True)
class JobClaim:
    """A claimed job and the lease that fences every report about it: the fencing token and
    the lease's secret, which only this claim's answer carried."""

    job: dict[str, Any]
    token: int
    expires_at: str
    secret: str = field(default="", repr=False)

    @property
    def id(self) -> str:
        return str(self.job["id"])

    def lease(self) -> dict[str, Any]:
        """The lease as the batched calls name it."""
        return {"id": self.id, "token": self.token, "secret": self.secret}


@dataclass(frozen=True, slots=True)
class NextJobs:
    """The claim that rides on a report (`report(..., claim=NextJobs(["q"], max_jobs=8))`)."""

    queues: Sequence[str]
    max_jobs: int = 1
    lease_seconds: float = 30
    worker: str | None = None
    wait: float = 0

    def body(self) -> dict[str, Any]:
        return _present(
            queues=list(self.queues),
            max_jobs=self.max_jobs,
            lease_seconds=self.lease_seconds,
            worker=self.worker,
            wait=self.wait,
        )


@dataclass(frozen=True, slots=True)
class Reported:
    """The answer of `report`: each report's outcome, in the order sent (`{"id", "code": 200,
    "job"}` or `{"id", "code": 404/403/409/422, "error"}`), and the jobs claimed."""

    complete: list[dict[str, Any]]
    fail: list[dict[str, Any]]
    release: list[dict[str, Any]]
    claims: list[JobClaim]


def _body(status: int, body: Any) -> Any:
    return body


def _nothing(status: int, body: Any) -> None:
    return None


def _job_claim(item: dict[str, Any]) -> JobClaim:
    lease = item["lease"]
    return JobClaim(
        job=item["job"],
        token=int(lease["token"]),
        expires_at=lease["expires_at"],
        secret=str(lease["secret"]),
    )


def granted(body: Any) -> list[dict[str, Any]]:
    """The claims (`{"job", "lease"}`) an answer carries, whichever call it answers."""
    if not isinstance(body, dict):
        return []
    if "lease" in body and "job" in body:
        return [body]
    claims = body.get("claims")
    return claims if isinstance(claims, list) else []


def _claim(status: int, body: Any) -> JobClaim | None:
    return None if status == 204 else _job_claim(body)


def _claims(status: int, body: Any) -> list[JobClaim]:
    return [] if status == 204 else [_job_claim(item) for item in body["claims"]]


def _reported(status: int, body: Any) -> Reported:
    return Reported(
        complete=body["complete"],
        fail=body["fail"],
        release=body["release"],
        claims=[_job_claim(item) for item in body["claims"]],
    )


def _leases(status: int, body: Any) -> list[dict[str, Any]]:
    leases: list[dict[str, Any]] = body["leases"]
    return leases


@dataclass(frozen=True, slots=True)
class Call(Generic[R]):
    """One request and how to read its answer."""

    method: str
    path: str
    read: Callable[[int, Any], R]
    json: Any = None
    params: dict[str, str] | None = None
    headers: dict[str, str] | None = None
    timeout: float | None = None
    authenticated: bool = True
    # GETs of a resource or list: If-None-Match from the cache, and the cached body on a 304.
    cacheable: bool = False
    # The answer is the resource at this path (its ETag is remembered for `If-Match`).
    resource: str | None = None
    # `If-Match` is required: the caller's tag, else the last one this client saw for `resource`.
    guarded: bool = False
    # A login: the session keeps the token, and these credentials to log in again.
    credentials: tuple[str, str] | None = None
    # The answer is a token pair (login, refresh): the session keeps both tokens.
    grants: bool = False
    # A logout: the session forgets its tokens and credentials.
    ends_session: bool = False
    # A change of one's own password: the session logs in again with this one.
    new_password: str | None = None
    # The answer is text (Prometheus exposition), not JSON.
    text: bool = False
    # A call about a lease: (job id, token, its secret or None for the one this client was given
    # with the claim); the secret is added to the body when sent.
    lease: tuple[str, int, str | None] | None = None
    # The answer grants leases: the client remembers their secrets.
    leases_granted: bool = False


def _present(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _if_match(if_match: str | None) -> dict[str, str] | None:
    return {"If-Match": if_match} if if_match is not None else None


def _idempotent(key: str | None) -> dict[str, str] | None:
    return {"Idempotency-Key": key} if key is not None else None


def _query(**values: Any) -> dict[str, str] | None:
    query = {k: str(v) for k, v in values.items() if v is not None}
    return query or None


def _instant(value: datetime | str | None) -> str | None:
    """RFC 3339 with its offset; a naive datetime is refused here rather than by the server."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("run_at needs a time zone (an aware datetime)")
        return value.isoformat()
    return value


def _job(job_id: str) -> str:
    return f"/api/v1/jobs/{job_id}"


def _task(task_id: str) -> str:
    return f"/api/v1/collab/tasks/{task_id}"


def _schedule(schedule_id: str) -> str:
    return f"/api/v1/schedules/{schedule_id}"


# ------------------------------------------------------------------- health and users


def health() -> Call[dict[str, Any]]:
    """Liveness (`GET /health`): the process answers; touches no database."""
    return Call("GET", "/health", _body, authenticated=False)


def ready() -> Call[dict[str, Any]]:
    """Readiness (`GET /healthz`): a round trip to the database; `ApiError` (500) when down."""
    return Call("GET", "/healthz", _body, authenticated=False)


def login(username: str, password: str) -> Call[None]:
    """Log in; the client logs in again by itself when the token expires."""
    return Call(
        "POST",
        "/auth/login",
        _nothing,
        json={"username": username, "password": password},
        authenticated=False,
        credentials=(username, password),
        grants=True,
    )


def refresh(refresh_token: str) -> Call[None]:
    """Exchange a refresh token (once) for a new pair; the client keeps both.

    The client does this by itself with the refresh token of its login when a token expires
    or is revoked, before logging in again with its password.
    """
    return Call(
        "POST",
        "/auth/refresh",
        _nothing,
        json={"refresh_token": refresh_token},
        authenticated=False,
        grants=True,
    )


def logout() -> Call[None]:
    """End this client's session on the server; the client forgets its token and password."""
    return Call("POST", "/auth/logout", _nothing, ends_session=True)


def list_sessions(*, username: str | None = None) -> Call[dict[str, Any]]:
    """Your live sessions (admins: `username`'s); `current` marks this client's."""
    return Call("GET", "/api/v1/sessions", _body, params=_query(username=username))


def end_session(session_id: str, *, username: str | None = None) -> Call[None]:
    """End one session: its tokens stop working on every server."""
    return Call(
        "DELETE", f"/api/v1/sessions/{session_id}", _nothing, params=_query(username=username)
    )


def me() -> Call[dict[str, Any]]:
    """The user the token belongs to."""
    return Call("GET", "/api/v1/users/me", _body)


def list_users() -> Call[dict[str, Any]]:
    """Every user (admins only)."""
    return Call("GET", "/api/v1/users", _body, cacheable=True)


def create_user(username: str, password: str, *, role: Role | None = None) -> Call[dict[str, Any]]:
    """Create a user (admins only; `role` defaults to member)."""
    body = _present(username=username, password=password, role=role)
    return Call("POST", "/api/v1/users", _body, json=body)


def update_user(
    username: str,
    *,
    role: Role | None = None,
    disabled: bool | None = None,
) -> Call[dict[str, Any]]:
    """Change a user's role or disable/enable them (admins only; not yourself)."""
    body = _present(role=role, disabled=disabled)
    return Call("PATCH", f"/api/v1/users/{quote(username, safe='')}", _body, json=body)


def end_user_sessions(username: str) -> Call[None]:
    """End every session of a user (admins only): their tokens stop working; API keys stay."""
    return Call("DELETE", f"/api/v1/users/{quote(username, safe='')}/sessions", _nothing)


def change_password(current_password: str, new_password: str) -> Call[None]:
    """Change your own password; your other sessions end, this client logs in with the new one."""
    return Call(
        "POST",
        "/api/v1/users/me/password",
        _nothing,
        json={"current_password": current_password, "new_password": new_password},
        new_password=new_password,
    )


def create_api_key(
    name: str,
    *,
    read_only: bool | None = None,
    expires_in_days: int | None = None,
    username: str | None = None,
) -> Call[dict[str, Any]]:
    """Make an API key (admins: for `username`); the answer's `key` is shown this once."""
    body = _present(
        name=name, read_only=read_only, expires_in_days=expires_in_days, username=username
    )
    return Call("POST", "/api/v1/api-keys", _body, json=body)


def list_api_keys(*, username: str | None = None) -> Call[dict[str, Any]]:
    """Your API keys (admins: everyone's, or `username`'s), without their secrets."""
    return Call("GET", "/api/v1/api-keys", _body, params=_query(username=username))


def revoke_api_key(key_id: str) -> Call[None]:
    """Revoke an API key: refused by every process from then on."""
    return Call("DELETE", f"/api/v1/api-keys/{quote(key_id, safe='')}", _nothing)


def metrics() -> Call[str]:
    """The Prometheus exposition of `/metrics` (loopback, or `ORCH_METRICS_TOKEN` as token)."""
    return Call("GET", "/metrics", _body, text=True)


# ------------------------------------------------------------------------------- jobs


def create_job(
    name: str,
    *,
    description: str | None = None,
    queue: str | None = None,
    payload: dict[str, Any] | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
    run_at: datetime | str | None = None,
    delay: timedelta | float | None = None,
    unique_key: str | None = None,
    idempotency_key: str | None = None,
    depends_on: Sequence[str] | None = None,
) -> Call[dict[str, Any]]:
    """Create a job (pending), due at once, at `run_at` (aware) or after `delay`; with
    `depends_on` (up to 100 job ids) it is `waiting` until every one of them has succeeded.

    With `unique_key`, while a job of the queue with that key is pending or running, the
    answer is that job (its `id` also in `Orchestrator-Duplicate-Of`). The same
    `idempotency_key` within 24 h replays the first answer.
    """
    body = _present(
        title=name,
        description=description,
        queue=queue,
        payload=payload,
        priority=priority,
        max_attempts=max_attempts,
        run_at=_instant(run_at),
        delay_seconds=delay.total_seconds() if isinstance(delay, timedelta) else delay,
        unique_key=unique_key,
        depends_on=list(depends_on) if depends_on is not None else None,
    )
    return Call("POST", "/api/v1/jobs", _body, json=body, headers=_idempotent(idempotency_key))


def get_job(job_id: str) -> Call[dict[str, Any]]:
    """A job (revalidated with its ETag when this client has read it before)."""
    return Call("GET", _job(job_id), _body, cacheable=True, resource=_job(job_id))


def list_jobs(
    *,
    status: JobStatus | None = None,
    queue: str | None = None,
    search: str | None = None,
    order: Literal["asc", "desc"] | None = None,
    scheduled: bool | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[dict[str, Any]]:
    """Jobs (oldest first, or newest with `order="desc"`) of a `status`, a `queue`, with
    `search` in the title, waiting for a future `run_at` (`scheduled=True`) or due
    (`False`): all of them, or pages of `limit` (`next_cursor` is the next)."""
    params = _query(
        status=status,
        queue=queue,
        search=search,
        order=order,
        scheduled=None if scheduled is None else str(scheduled).lower(),
        limit=limit,
        cursor=cursor,
    )
    return Call("GET", "/api/v1/jobs", _body, params=params, cacheable=True)


def delete_job(job_id: str, *, if_match: str | None = None) -> Call[None]:
    """Delete a job (its creator or an admin); with `if_match`, only at that version (else 412)."""
    return Call(
        "DELETE", _job(job_id), _nothing, headers=_if_match(if_match), resource=_job(job_id)
    )


def cancel_job(job_id: str) -> Call[dict[str, Any]]:
    """Cancel a job: at once when pending, at its worker's next heartbeat when running."""
    return Call("POST", f"{_job(job_id)}/cancel", _body)


def retry_job(
    job_id: str, *, run_at: datetime | str | None = None, delay: timedelta | float | None = None
) -> Call[dict[str, Any]]:
    """Run a failed or cancelled job again (its creator or an admin), at once, at `run_at`
    (aware) or after `delay`."""
    body = _present(
        run_at=_instant(run_at),
        delay_seconds=delay.total_seconds() if isinstance(delay, timedelta) else delay,
    )
    return Call("POST", f"{_job(job_id)}/retry", _body, json=body)


def bulk(
    action: Literal["cancel", "retry", "delete"],
    *,
    ids: Sequence[str] | None = None,
    status: JobStatus | None = None,
    queue: str | None = None,
    created_before: datetime | str | None = None,
    limit: int | None = None,
) -> Call[dict[str, Any]]:
    """Cancel, retry or delete the jobs `ids`, or else every job matching the filters (members:
    their own), at most `limit` (10,000): `{"matched": N, "changed": M}`."""
    body: dict[str, Any] = _present(action=action, limit=limit)
    if ids is not None:
        body["ids"] = list(ids)
    else:
        body["filter"] = _present(
            status=status, queue=queue, created_before=_instant(created_before)
        )
    return Call("POST", "/api/v1/jobs/bulk", _body, json=body)


def claim(
    queues: Sequence[str],
    *,
    lease_seconds: float = 30,
    worker: str | None = None,
    wait: float = 0,
) -> Call[JobClaim | None]:
    """Take the next due job of `queues`, waiting up to `wait` seconds; None when there is none."""
    body = _present(queues=list(queues), lease_seconds=lease_seconds, worker=worker, wait=wait)
    return Call(
        "POST", "/api/v1/jobs/claim", _claim, json=body, timeout=wait + 30, leases_granted=True
    )


def claim_jobs(
    queues: Sequence[str],
    *,
    max_jobs: int,
    lease_seconds: float = 30,
    worker: str | None = None,
    wait: float = 0,
) -> Call[list[JobClaim]]:
    """Take up to `max_jobs` (at most 100) due jobs of `queues`, waiting up to `wait` seconds
    for the first; an empty list when there is none."""
    spec = NextJobs(queues, max_jobs, lease_seconds=lease_seconds, worker=worker, wait=wait)
    return Call(
        "POST",
        "/api/v1/jobs/claim",
        _claims,
        json=spec.body(),
        timeout=wait + 30,
        leases_granted=True,
    )


def heartbeat(
    job_id: str,
    token: int,
    *,
    lease_seconds: float = 30,
    secret: str | None = None,
    progress: float | None = None,
    message: str | None = None,
) -> Call[dict[str, Any]]:
    """Extend the lease, reporting `progress` (0 to 1) and `message` when given;
    `cancel_requested` in the answer tells the worker to stop."""
    body = {
        "token": token,
        "lease_seconds": lease_seconds,
        **_present(progress=progress, message=message),
    }
    return Call(
        "POST", f"{_job(job_id)}/heartbeat", _body, json=body, lease=(job_id, token, secret)
    )


def heartbeat_jobs(
    leases: Sequence[JobClaim],
    *,
    lease_seconds: float = 30,
    progress: Mapping[str, tuple[float | None, str | None]] | None = None,
) -> Call[list[dict[str, Any]]]:
    """Extend many leases (at most 100) in one call, with the `(progress, message)` of the
    jobs `progress` names; each answer, in order, is `{"code": 200, "id", "status",
    "cancel_requested", "lease"}` or `{"id", "code": 404/403/409, "error"}`."""
    told = progress or {}

    def item(claimed: JobClaim) -> dict[str, Any]:
        fraction, message = told.get(claimed.id, (None, None))
        return {**claimed.lease(), **_present(progress=fraction, message=message)}

    body = {"leases": [item(claimed) for claimed in leases], "lease_seconds": lease_seconds}
    return Call("POST", "/api/v1/jobs/heartbeat", _leases, json=body)


def _items(status: int, body: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = body["items"]
    return items


def append_job_logs(
    job_id: str, token: int, lines: Sequence[str], *, secret: str | None = None
) -> Call[list[dict[str, Any]]]:
    """Append up to 100 lines (each at most 4,096 bytes of UTF-8) to the log of the job this
    lease holds; the lines as stored, each `{"n", "line", "created_at"}`."""
    return Call(
        "POST",
        f"{_job(job_id)}/logs",
        _items,
        json={"token": token, "lines": list(lines)},
        lease=(job_id, token, secret),
    )


def list_job_logs(
    job_id: str, *, after: int | None = None, limit: int | None = None
) -> Call[dict[str, Any]]:
    """A job's log lines numbered above `after` (from the first kept), oldest first, `limit`
    (1 to 1,000; 100) at a time: `{"items": [{"n", "line", "created_at"}], "next_after"}`,
    `next_after` being the `after` of the next page (None on the last)."""
    return Call("GET", f"{_job(job_id)}/logs", _body, params=_query(after=after, limit=limit))


def complete(
    job_id: str, token: int, result: Any = None, *, secret: str | None = None
) -> Call[dict[str, Any]]:
    """Record success and the job's result (JSON, at most 64 KiB)."""
    return Call(
        "POST",
        f"{_job(job_id)}/complete",
        _body,
        json={"token": token, "result": result},
        lease=(job_id, token, secret),
    )


def fail(
    job_id: str, token: int, error: str, *, retry: bool = True, secret: str | None = None
) -> Call[dict[str, Any]]:
    """Record a failure: retried after a backoff while attempts remain, unless `retry=False`."""
    body = {"token": token, "error": error, "retry": retry}
    return Call("POST", f"{_job(job_id)}/fail", _body, json=body, lease=(job_id, token, secret))


def release(job_id: str, token: int, *, secret: str | None = None) -> Call[dict[str, Any]]:
    """Give the job back, pending at once; the attempt does not count."""
    return Call(
        "POST",
        f"{_job(job_id)}/release",
        _body,
        json={"token": token},
        lease=(job_id, token, secret),
    )


def report(
    *,
    complete: Sequence[tuple[JobClaim, Any]] = (),
    fail: Sequence[tuple[JobClaim, str] | tuple[JobClaim, str, bool]] = (),
    release: Sequence[JobClaim] = (),
    claim: NextJobs | None = None,
) -> Call[Reported]:
    """Complete (`(claim, result)`), fail (`(claim, error[, retry])`) and release many jobs
    (at most 100, each once), and with `claim` take the next ones, in one call and one
    transaction; a stale or refused report refuses only its own job (see `Reported`)."""
    failed = []
    for item in fail:
        claimed, error, *retry = item
        failed.append({**claimed.lease(), "error": error, "retry": retry[0] if retry else True})
    body: dict[str, Any] = {
        "complete": [{**claimed.lease(), "result": result} for claimed, result in complete],
        "fail": failed,
        "release": [claimed.lease() for claimed in release],
    }
    timeout = None
    if claim is not None:
        body["claim"] = claim.body()
        timeout = claim.wait + 30
    return Call(
        "POST", "/api/v1/jobs/report", _reported, json=body, timeout=timeout, leases_granted=True
    )


# ------------------------------------------------------------------------------ tasks


def create_task(
    title: str, *, description: str | None = None, idempotency_key: str | None = None
) -> Call[dict[str, Any]]:
    """Create a collaboration task; the same `idempotency_key` within 24 h replays the first."""
    return Call(
        "POST",
        "/api/v1/collab/tasks",
        _body,
        json=_present(title=title, description=description),
        headers=_idempotent(idempotency_key),
    )


def get_task(task_id: str) -> Call[dict[str, Any]]:
    """A task (revalidated with its ETag when this client has read it before)."""
    return Call("GET", _task(task_id), _body, cacheable=True, resource=_task(task_id))


def list_tasks(*, limit: int | None = None, cursor: str | None = None) -> Call[dict[str, Any]]:
    """Tasks, oldest first: all of them, or pages of `limit` (then `next_cursor` is the next)."""
    params = _query(limit=limit, cursor=cursor)
    return Call("GET", "/api/v1/collab/state/tasks", _body, params=params, cacheable=True)


def update_task(
    task_id: str,
    *,
    title: str | _Unset = UNSET,
    description: str | _Unset | None = UNSET,
    if_match: str | None = None,
) -> Call[dict[str, Any]]:
    """Edit a task at the version last seen (or `if_match`); `PreconditionFailedError` if stale.

    Without `if_match` the ETag of the task as this client last read or wrote it is sent, so
    an edit never overwrites a change it has not seen; `if_match="*"` edits whatever is there.
    """
    changes: dict[str, Any] = {}
    if not isinstance(title, _Unset):
        changes["title"] = title
    if not isinstance(description, _Unset):
        changes["description"] = description
    return Call(
        "PATCH",
        _task(task_id),
        _body,
        json=changes,
        headers=_if_match(if_match),
        resource=_task(task_id),
        guarded=True,
    )


def delete_task(task_id: str, *, if_match: str | None = None) -> Call[None]:
    """Delete a task at the version last seen (or `if_match`); 412 if it has changed since."""
    return Call(
        "DELETE",
        _task(task_id),
        _nothing,
        headers=_if_match(if_match),
        resource=_task(task_id),
        guarded=True,
    )


# -------------------------------------------------------------------------- schedules


def create_schedule(
    name: str,
    cron: str,
    job: dict[str, Any],
    *,
    timezone: str | None = None,
    enabled: bool | None = None,
) -> Call[dict[str, Any]]:
    """A cron schedule: each fire time of `cron` in `timezone` (an IANA name; UTC when None)
    makes one job from `job` (`title`, and optionally `description`, `queue`, `payload`,
    `priority`, `max_attempts`)."""
    body = _present(name=name, cron=cron, timezone=timezone, job=job, enabled=enabled)
    return Call("POST", "/api/v1/schedules", _body, json=body)


def get_schedule(schedule_id: str) -> Call[dict[str, Any]]:
    """A schedule (revalidated with its ETag when this client has read it before)."""
    return Call(
        "GET", _schedule(schedule_id), _body, cacheable=True, resource=_schedule(schedule_id)
    )


def list_schedules(*, limit: int | None = None, cursor: str | None = None) -> Call[dict[str, Any]]:
    """Schedules, oldest first: all of them, or pages of `limit` (`next_cursor` is the next)."""
    params = _query(limit=limit, cursor=cursor)
    return Call("GET", "/api/v1/schedules", _body, params=params, cacheable=True)


def update_schedule(
    schedule_id: str,
    *,
    name: str | None = None,
    cron: str | None = None,
    timezone: str | None = None,
    job: dict[str, Any] | None = None,
    enabled: bool | None = None,
    if_match: str | None = None,
) -> Call[dict[str, Any]]:
    """Edit the fields given, at the version last seen (or `if_match`; `"*"`: whatever is
    there). A fire changes a schedule too: `PreconditionFailedError` if it fired meanwhile."""
    changes = _present(name=name, cron=cron, timezone=timezone, job=job, enabled=enabled)
    return Call(
        "PATCH",
        _schedule(schedule_id),
        _body,
        json=changes,
        headers=_if_match(if_match),
        resource=_schedule(schedule_id),
        guarded=True,
    )


def delete_schedule(schedule_id: str, *, if_match: str | None = None) -> Call[None]:
    """Delete a schedule at the version last seen (or `if_match`); the jobs it made stay."""
    return Call(
        "DELETE",
        _schedule(schedule_id),
        _nothing,
        headers=_if_match(if_match),
        resource=_schedule(schedule_id),
        guarded=True,
    )


# ----------------------------------------------------------------------------- queues


def _queue(name: str) -> str:
    return f"/api/v1/queues/{quote(name, safe='')}"


def list_queues() -> Call[dict[str, Any]]:
    """`{"items": [...]}`: every queue that has jobs or settings, by name, each with `name`,
    `paused`, `max_running`, `counts` (jobs by status), `scheduled` and `oldest_pending_at`."""
    return Call("GET", "/api/v1/queues", _body, cacheable=True)


def get_queue(name: str) -> Call[dict[str, Any]]:
    """One queue (`NotFoundError` when it has neither jobs nor settings)."""
    return Call("GET", _queue(name), _body, cacheable=True, resource=_queue(name))


def update_queue(
    name: str, *, paused: bool | _Unset = UNSET, max_running: int | _Unset | None = UNSET
) -> Call[dict[str, Any]]:
    """Pause or resume a queue, or cap its running jobs (`max_running=None`: no cap); the
    settings left out stay as they are. Admins only."""
    changes: dict[str, Any] = {}
    if not isinstance(paused, _Unset):
        changes["paused"] = paused
    if not isinstance(max_running, _Unset):
        changes["max_running"] = max_running
    return Call("PATCH", _queue(name), _body, json=changes)
