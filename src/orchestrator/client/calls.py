"""The API's calls, described once for both clients: what to send and how to read the answer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class JobClaim:
    """A claimed job and the lease that fences every report about it."""

    job: dict[str, Any]
    token: int
    expires_at: str

    @property
    def id(self) -> str:
        return str(self.job["id"])


def _body(status: int, body: Any) -> Any:
    return body


def _nothing(status: int, body: Any) -> None:
    return None


def _claim(status: int, body: Any) -> JobClaim | None:
    if status == 204:
        return None
    lease = body["lease"]
    return JobClaim(job=body["job"], token=int(lease["token"]), expires_at=lease["expires_at"])


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    json: Any = None
    params: dict[str, Any] | None = None
    read: Callable[[int, Any], Any] = _body
    timeout: float | None = None
    authenticated: bool = True
    # Only GETs are cached: If-None-Match, and the cached body on 304.
    cacheable: bool = field(default=False)


def _present(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def login(username: str, password: str) -> Call:
    return Call(
        "POST",
        "/auth/login",
        json={"username": username, "password": password},
        authenticated=False,
    )


def create_job(
    name: str,
    *,
    description: str | None,
    queue: str | None,
    payload: dict[str, Any] | None,
    priority: int | None,
    max_attempts: int | None,
) -> Call:
    body = _present(
        title=name,
        description=description,
        queue=queue,
        payload=payload,
        priority=priority,
        max_attempts=max_attempts,
    )
    return Call("POST", "/api/v1/jobs", json=body)


def get_job(job_id: str) -> Call:
    return Call("GET", f"/api/v1/jobs/{job_id}", cacheable=True)


def list_jobs(params: dict[str, Any]) -> Call:
    return Call("GET", "/api/v1/jobs", params=params or None, cacheable=True)


def delete_job(job_id: str) -> Call:
    return Call("DELETE", f"/api/v1/jobs/{job_id}", read=_nothing)


def cancel_job(job_id: str) -> Call:
    return Call("POST", f"/api/v1/jobs/{job_id}/cancel")


def claim(queues: Sequence[str], *, lease_seconds: float, worker: str | None, wait: float) -> Call:
    body = _present(queues=list(queues), lease_seconds=lease_seconds, worker=worker, wait=wait)
    return Call("POST", "/api/v1/jobs/claim", json=body, read=_claim, timeout=wait + 30)


def heartbeat(job_id: str, token: int, *, lease_seconds: float) -> Call:
    body = {"token": token, "lease_seconds": lease_seconds}
    return Call("POST", f"/api/v1/jobs/{job_id}/heartbeat", json=body)


def complete(job_id: str, token: int, result: Any) -> Call:
    return Call("POST", f"/api/v1/jobs/{job_id}/complete", json={"token": token, "result": result})


def fail(job_id: str, token: int, error: str, *, retry: bool) -> Call:
    body = {"token": token, "error": error, "retry": retry}
    return Call("POST", f"/api/v1/jobs/{job_id}/fail", json=body)


def release(job_id: str, token: int) -> Call:
    return Call("POST", f"/api/v1/jobs/{job_id}/release", json={"token": token})


def create_task(title: str, *, description: str | None) -> Call:
    return Call("POST", "/api/v1/collab/tasks", json=_present(title=title, description=description))


def get_task(task_id: str) -> Call:
    return Call("GET", f"/api/v1/collab/tasks/{task_id}", cacheable=True)


def list_tasks() -> Call:
    return Call("GET", "/api/v1/collab/state/tasks", cacheable=True)
