"""Seed a database with tasks (or jobs) before the service starts.

Rows are inserted in batches of a few hundred per transaction, each batch ending with one
change-log entry (so the collection revision, which list ETags derive from, moves on as it
would). Creating them one by one, over HTTP or through `create_task`, takes minutes for 11,000
tasks on a busy two-core machine; this takes seconds. The rows are the ones `create_task`
writes, read back with the one definition of a task (`TASK_COLUMNS`, `task_body`).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from orchestrator.db import open_database
from orchestrator.db.changelog import record_change
from orchestrator.db.migrate import upgrade
from orchestrator.jobs.records import JOB_COLUMNS, job_body
from orchestrator.representation import canonical_json
from orchestrator.tasks.records import TASK_COLUMNS, task_body

BATCH = 500


async def _seed(url: str, count: int) -> None:
    db = open_database(url, timeout=60)
    start = datetime.now(UTC)
    try:
        for first in range(0, count, BATCH):
            numbers = range(first, min(first + BATCH, count))
            params: dict[str, object] = {"by": "admin"}
            values = []
            for i in numbers:
                values.append(f"(:id{i}, :title{i}, :description{i}, 1, :by, :at{i}, :at{i})")
                params[f"id{i}"] = str(uuid.uuid4())
                params[f"title{i}"] = f"task {i}"
                params[f"description{i}"] = f"seeded task number {i}"
                # distinct, increasing creation times: the list's order is (created_at, id)
                params[f"at{i}"] = start + timedelta(microseconds=i)
            last = params[f"id{numbers[-1]}"]
            async with db.transaction() as tx:
                await tx.execute(
                    "INSERT INTO tasks (id, title, description, version, created_by, created_at, "
                    "updated_at) VALUES " + ", ".join(values),
                    params,
                )
                row = await tx.fetch_one(
                    f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = :id", {"id": last}
                )
                assert row is not None
                await record_change(
                    tx,
                    collection="tasks",
                    op="create",
                    resource_id=str(last),
                    data=canonical_json(task_body(row)),
                )
    finally:
        await db.close()


def seed_tasks(database_url: str, count: int) -> None:
    """Migrate `database_url` to the newest schema and create `count` tasks in it."""
    upgrade(database_url)
    asyncio.run(_seed(database_url, count))


JOB_STATUSES = ("succeeded", "succeeded", "succeeded", "failed", "cancelled", "pending")
JOB_QUEUES = ("emails", "images", "reports")


async def _seed_jobs(url: str, count: int, statuses: tuple[str, ...]) -> None:
    db = open_database(url, timeout=60)
    start = datetime.now(UTC) - timedelta(hours=1)
    try:
        for first in range(0, count, BATCH):
            numbers = range(first, min(first + BATCH, count))
            params: dict[str, object] = {"by": "admin", "false": False}
            values = []
            for i in numbers:
                status = statuses[i % len(statuses)]
                finished = status in ("succeeded", "failed", "cancelled")
                values.append(
                    f"(:id{i}, :title{i}, NULL, :status{i}, :by, 2, :queue{i}, :payload{i}, 0, 3, "
                    f":attempts{i}, NULL, :error{i}, :false, 0, :at{i}, :started{i}, :finished{i}, "
                    f":at{i}, :at{i})"
                )
                at = start + timedelta(milliseconds=i)
                params.update(
                    {
                        f"id{i}": str(uuid.uuid4()),
                        f"title{i}": f"seeded job {i}",
                        f"status{i}": status,
                        f"queue{i}": JOB_QUEUES[i % len(JOB_QUEUES)],
                        f"payload{i}": canonical_json({"n": i}).decode(),
                        f"attempts{i}": 1 if finished else 0,
                        f"error{i}": "seeded failure" if status == "failed" else None,
                        f"at{i}": at,
                        f"started{i}": at if finished else None,
                        f"finished{i}": at + timedelta(milliseconds=5) if finished else None,
                    }
                )
            last = params[f"id{numbers[-1]}"]
            async with db.transaction() as tx:
                await tx.execute(
                    "INSERT INTO jobs (id, title, description, status, created_by, version, queue, "
                    "payload, priority, max_attempts, attempts, result, error, cancel_requested, "
                    "lease_token, run_after, started_at, finished_at, created_at, updated_at) "
                    "VALUES " + ", ".join(values),
                    params,
                )
                row = await tx.fetch_one(
                    f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = :id", {"id": last}
                )
                assert row is not None
                await record_change(
                    tx,
                    collection="jobs",
                    op="create",
                    resource_id=str(last),
                    data=canonical_json(job_body(row)),
                )
    finally:
        await db.close()


def seed_jobs(database_url: str, count: int, *, statuses: tuple[str, ...] = JOB_STATUSES) -> None:
    """Migrate `database_url` to the newest schema and create `count` jobs, their states
    taken in turn from `statuses` (mixed by default)."""
    upgrade(database_url)
    asyncio.run(_seed_jobs(database_url, count, statuses))
