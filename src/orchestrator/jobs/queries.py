"""Job queries for the contract's endpoints (workers' transitions live in `leases`)."""

from __future__ import annotations

import uuid
from typing import Any

from orchestrator.db import Database, Transaction
from orchestrator.db.changelog import record_change
from orchestrator.db.idempotency import IdempotentRequest, create_once
from orchestrator.db.keyset import Position, keyset_page
from orchestrator.jobs.records import JOB_COLUMNS, StoredJob, job_body, stored_job
from orchestrator.representation import canonical_json
from orchestrator.timestamps import utcnow


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

    async def insert(tx: Transaction) -> StoredJob:
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
        return stored_job(row)

    return await create_once(db, collection="jobs", insert=insert, idempotency=idempotency)


async def get_job(db: Database, *, job_id: str) -> StoredJob | None:
    row = await db.fetch_one(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = :id", {"id": job_id})
    return stored_job(row) if row is not None else None


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
    return await keyset_page(
        db,
        select=f"SELECT {JOB_COLUMNS} FROM jobs",
        conditions=conditions,
        params=params,
        after=after,
        limit=limit,
        newest_first=newest_first,
        body=job_body,
    )


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
