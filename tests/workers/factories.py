"""Jobs written straight into the database, as the create route stores them."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import orjson

from orchestrator.db import Database
from orchestrator.db.changelog import record_change
from orchestrator.jobs.records import JOB_COLUMNS, job_body
from orchestrator.representation import canonical_json
from orchestrator.timestamps import utcnow


async def insert_jobs(
    db: Database,
    count: int = 1,
    *,
    queue: str = "default",
    payload: dict[str, Any] | None = None,
    priority: int = 0,
    max_attempts: int = 3,
    created_by: str = "admin",
    due_in: float = 0,
) -> list[str]:
    """`count` pending jobs in one transaction, each with its change; returns their ids."""
    ids: list[str] = []
    async with db.transaction() as tx:
        for n in range(count):
            job_id = str(uuid.uuid4())
            now = utcnow()
            row = await tx.fetch_one(
                "INSERT INTO jobs (id, title, status, created_by, queue, payload, priority, "
                "max_attempts, run_after, created_at, updated_at) VALUES (:id, :title, "
                "'pending', :created_by, :queue, :payload, :priority, :max_attempts, :due, "
                f":now, :now) RETURNING {JOB_COLUMNS}",
                {
                    "id": job_id,
                    "title": f"job {n}",
                    "created_by": created_by,
                    "queue": queue,
                    "payload": orjson.dumps(payload).decode() if payload is not None else None,
                    "priority": priority,
                    "max_attempts": max_attempts,
                    "now": now,
                    "due": now + timedelta(seconds=due_in),
                },
            )
            assert row is not None
            await record_change(
                tx,
                collection="jobs",
                op="create",
                resource_id=job_id,
                data=canonical_json(job_body(row)),
            )
            ids.append(job_id)
    return ids
