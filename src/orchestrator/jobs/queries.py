"""Job queries for the contract's endpoints (workers' transitions live in `leases`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from orchestrator.db import ConstraintViolation, Database, Row
from orchestrator.db.changelog import record_change
from orchestrator.db.idempotency import DuplicateRequest, IdempotentRequest, remember_response
from orchestrator.db.keyset import Position
from orchestrator.jobs.records import JOB_COLUMNS, job_body
from orchestrator.representation import canonical_json, etag_for
from orchestrator.timestamps import as_utc, utcnow


@dataclass(frozen=True, slots=True)
class StoredJob:
    """A job's representation: its canonical body, the ETag of those bytes, and the guards."""

    id: str
    version: int
    created_by: str
    body: bytes
    etag: str


def _stored(row: Row) -> StoredJob:
    body = canonical_json(job_body(row))
    return StoredJob(
        id=row["id"],
        version=int(row["version"]),
        created_by=row["created_by"],
        body=body,
        etag=etag_for(body),
    )


async def create_job(
    db: Database,
    *,
    title: str,
    description: str | None,
    created_by: str,
    queue: str = "default",
    payload: dict[str, Any] | None = None,
    priority: int = 0,
    max_attempts: int = 3,
    idempotency: IdempotentRequest | None = None,
) -> StoredJob:
    """Insert a pending job, due now; DuplicateRequest if its idempotency key won elsewhere."""
    now = utcnow()
    try:
        async with db.transaction() as tx:
            row = await tx.fetch_one(
                "INSERT INTO jobs (id, title, description, status, created_by, version, queue, "
                "payload, priority, max_attempts, attempts, cancel_requested, lease_token, "
                "run_after, created_at, updated_at) VALUES (:id, :title, :description, 'pending', "
                ":created_by, 1, :queue, :payload, :priority, :max_attempts, 0, :false, 0, :now, "
                f":now, :now) RETURNING {JOB_COLUMNS}",
                {
                    "id": str(uuid.uuid4()),
                    "title": title,
                    "description": description,
                    "created_by": created_by,
                    "queue": queue,
                    "payload": canonical_json(payload).decode() if payload is not None else None,
                    "priority": priority,
                    "max_attempts": max_attempts,
                    "false": False,
                    "now": now,
                },
            )
            assert row is not None
            job = _stored(row)
            if idempotency is not None:
                await remember_response(
                    tx, request=idempotency, status_code=201, resource_id=job.id, body=job.body
                )
            await record_change(
                tx,
                collection="jobs",
                op="create",
                resource_id=job.id,
                data=job.body,
            )
    except ConstraintViolation:
        if idempotency is None:
            raise
        raise DuplicateRequest() from None
    return job


async def get_job(db: Database, *, job_id: str) -> StoredJob | None:
    row = await db.fetch_one(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = :id", {"id": job_id})
    return _stored(row) if row is not None else None


def like_pattern(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, its own wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_jobs(
    db: Database,
    *,
    status: str | None,
    after: Position | None,
    limit: int | None,
    queue: str | None = None,
    search: str | None = None,
    newest_first: bool = False,
) -> tuple[list[dict[str, Any]], Position | None]:
    """Jobs in (`created_at`, `id`) order (or its reverse), optionally of one status and queue
    and with `search` in the title (case-insensitive); the next page's position."""
    conditions: list[str] = []
    params: dict[str, Any] = {}
    if status is not None:
        conditions.append("status = :status")
        params["status"] = status
    if queue is not None:
        conditions.append("queue = :queue")
        params["queue"] = queue
    if search is not None:
        conditions.append("lower(title) LIKE :search ESCAPE '\\'")
        params["search"] = like_pattern(search.lower())
    if after is not None:
        beyond = "<" if newest_first else ">"
        conditions.append(
            f"(created_at {beyond} :after_at OR (created_at = :after_at AND id {beyond} :after_id))"
        )
        params.update(after_at=after.created_at, after_id=after.id)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    direction = " DESC" if newest_first else ""
    sql = f"SELECT {JOB_COLUMNS} FROM jobs{where} ORDER BY created_at{direction}, id{direction}"
    if limit is not None:
        sql += " LIMIT :limit"
        params["limit"] = limit + 1
    rows = await db.fetch_all(sql, params)
    more = limit is not None and len(rows) > limit
    if more:
        rows = rows[:limit]
    items = [job_body(row) for row in rows]
    last = rows[-1] if more else None
    return items, Position(as_utc(last["created_at"]), last["id"]) if last is not None else None


async def delete_job(db: Database, *, job_id: str, expected_version: int | None) -> bool:
    """Delete the job if still at `expected_version` (any, when None); False if none matched."""
    guard = " AND version = :expected" if expected_version is not None else ""
    async with db.transaction() as tx:
        row = await tx.fetch_one(
            f"DELETE FROM jobs WHERE id = :id{guard} RETURNING id",
            {"id": job_id, "expected": expected_version},
        )
        if row is None:
            return False
        await record_change(tx, collection="jobs", op="delete", resource_id=job_id, data=None)
    return True


async def count_jobs(db: Database) -> list[tuple[str, str, int]]:
    """(queue, status, count) for every queue and status that has jobs."""
    # The claim index (queue, status, …) answers this without reading the jobs themselves.
    rows = await db.fetch_all(
        "SELECT queue, status, count(*) AS n FROM jobs GROUP BY queue, status "
        "ORDER BY queue, status"
    )
    return [(str(row["queue"]), str(row["status"]), int(row["n"])) for row in rows]
