"""A job as stored and as shown: the columns we read and the JSON body built from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from orchestrator.db import Row
from orchestrator.representation import canonical_json, etag_for
from orchestrator.timestamps import as_utc, iso_text

# `waiting`: for its parents (`depends_on`) to succeed, before it is `pending`.
JobStatus = Literal["waiting", "pending", "running", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

# Every column a job body needs, in one place for every query that returns jobs.
JOB_COLUMNS = (
    "id, title, description, status, created_by, version, queue, payload, priority, "
    "max_attempts, attempts, result, error, cancel_requested, worker, started_at, finished_at, "
    "created_at, updated_at, run_after, unique_key, progress, progress_message, depends_on, "
    "has_dependents"
)


def _json(value: str | None) -> orjson.Fragment | None:
    # Spliced in as stored (canonical JSON), never parsed and written again: what was stored
    # is shown however it nests (a result stored 252 levels deep made every list a 500).
    return orjson.Fragment(value) if value is not None else None


def _ts(value: Any) -> str | None:
    return iso_text(value) if value is not None else None


def _run_at(row: Row) -> str | None:
    """The time the job was put off to, or None when it was due as soon as it last changed.

    `run_after` is always set (a claim compares it); only a time later than the job's last
    change is a delay someone asked for: `run_at`, `delay_seconds`, a retry's backoff.
    """
    run_after, updated_at = row["run_after"], row["updated_at"]
    if run_after is None or as_utc(run_after) <= as_utc(updated_at):
        return None
    return iso_text(run_after)


def job_body(row: Row) -> dict[str, Any]:
    """The job as clients see it: the contract's `id`, `name`, `status`, then the rest."""
    return {
        "id": row["id"],
        "name": row["title"],
        "status": row["status"],
        "description": row["description"],
        "created_by": row["created_by"],
        "version": int(row["version"]),
        "queue": row["queue"],
        "payload": _json(row["payload"]),
        "priority": int(row["priority"]),
        "max_attempts": int(row["max_attempts"]),
        "attempts": int(row["attempts"]),
        "result": _json(row["result"]),
        "error": row["error"],
        "cancel_requested": bool(row["cancel_requested"]),
        # Who holds (or last held) the job's lease.
        "worker": row["worker"],
        "progress": float(row["progress"]) if row["progress"] is not None else None,
        "progress_message": row["progress_message"],
        "run_at": _run_at(row),
        "unique_key": row["unique_key"],
        "depends_on": _json(row["depends_on"]) if row["depends_on"] is not None else [],
        "started_at": _ts(row["started_at"]),
        "finished_at": _ts(row["finished_at"]),
        "created_at": _ts(row["created_at"]),
        "updated_at": _ts(row["updated_at"]),
    }


@dataclass(frozen=True, slots=True)
class StoredJob:
    """A job's representation: its canonical body, the ETag of those bytes, and the guards."""

    id: str
    status: str
    version: int
    created_by: str
    body: bytes
    etag: str
    data: dict[str, Any] = field(repr=False, compare=False)  # what `body` serialises
    # Some job names this one as a parent: its transitions may move those jobs too.
    has_dependents: bool = False


def stored_job(row: Row) -> StoredJob:
    """The job of a row, serialised once: the bytes the change log keeps and the client gets."""
    data = job_body(row)
    body = canonical_json(data)
    return StoredJob(
        id=row["id"],
        status=row["status"],
        version=int(row["version"]),
        created_by=row["created_by"],
        body=body,
        etag=etag_for(body),
        data=data,
        has_dependents=bool(row["has_dependents"]),
    )
