"""Job queries for the contract's endpoints (workers' transitions live in `leases`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from orchestrator.db import Database, Transaction
from orchestrator.db.changelog import ChangeEntry, record_changes
from orchestrator.db.idempotency import AlreadyExists, IdempotentRequest, create_once
from orchestrator.db.keyset import Position, keyset_page
from orchestrator.jobs.dependencies import Start, add_edges, lock_new_parents, settle_dependents
from orchestrator.jobs.records import JOB_COLUMNS, StoredJob, job_body, stored_job
from orchestrator.representation import canonical_json
from orchestrator.timestamps import as_utc, utcnow

# The partial unique index (of migration 0011), named as ON CONFLICT must name it.
UNFINISHED = "status IN ('waiting', 'pending', 'running')"
_UNIQUE_TARGET = f"(queue, unique_key) WHERE unique_key IS NOT NULL AND {UNFINISHED}"


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What a new job is: the fields a client (or a schedule) gives."""

    title: str
    description: str | None = None
    queue: str = "default"
    payload: dict[str, Any] | None = None
    priority: int = 0
    max_attempts: int = 3
    # Parents (distinct, existing): the job waits until each has succeeded.
    depends_on: tuple[str, ...] = ()


async def create_job(
    db: Database,
    *,
    spec: JobSpec,
    created_by: str,
    run_at: datetime | None = None,
    delay_seconds: float | None = None,
    unique_key: str | None = None,
    idempotency: IdempotentRequest | None = None,
) -> StoredJob:
    """Insert a pending job, due now, at `run_at` or after `delay_seconds` (waiting first for
    its parents, if any).

    AlreadyExists (with that job) when an unfinished job of the queue holds `unique_key`;
    DuplicateRequest when the idempotency key won elsewhere.
    """
    now = utcnow()
    if delay_seconds is not None:
        run_after = now + timedelta(seconds=delay_seconds)
    else:
        run_after = as_utc(run_at) if run_at is not None else now

    async def insert(tx: Transaction) -> StoredJob:
        job, created = await insert_job(
            tx,
            spec=spec,
            created_by=created_by,
            now=now,
            run_after=run_after,
            unique_key=unique_key,
        )
        if not created:
            raise AlreadyExists(job)
        return job

    return await create_once(db, collection="jobs", insert=insert, idempotency=idempotency)


async def insert_job(
    tx: Transaction,
    *,
    spec: JobSpec,
    created_by: str,
    now: datetime,
    run_after: datetime,
    unique_key: str | None,
) -> tuple[StoredJob, bool]:
    """The new job (True), or the unfinished job already holding its unique key (False); the
    caller logs the change.

    The index decides, so two processes racing cannot both insert: the loser's insert does
    nothing and it reads the winner's job. If that job finishes in between, the key is free
    again and the insert is tried once more.

    With parents the job starts `waiting` (`pending` if they all succeeded already, or
    `cancelled` if one failed or was cancelled); Unprocessable if one does not exist.
    """
    job_id = str(uuid.uuid4())
    start = Start(status="pending")
    if spec.depends_on:
        start = await lock_new_parents(tx, parent_ids=spec.depends_on)
    params = {
        "id": job_id,
        "status": start.status,
        "error": start.error,
        "finished_at": now if start.status == "cancelled" else None,
        "depends_on": canonical_json(list(spec.depends_on)).decode() if spec.depends_on else None,
        "title": spec.title,
        "description": spec.description,
        "created_by": created_by,
        "queue": spec.queue,
        "payload": canonical_json(spec.payload).decode() if spec.payload is not None else None,
        "priority": spec.priority,
        "max_attempts": spec.max_attempts,
        "false": False,
        "now": now,
        "run_after": run_after,
        "unique_key": unique_key,
    }
    conflict = f" ON CONFLICT {_UNIQUE_TARGET} DO NOTHING" if unique_key is not None else ""
    while True:
        row = await tx.fetch_one(
            "INSERT INTO jobs (id, title, description, status, created_by, version, queue, "
            "payload, priority, max_attempts, attempts, cancel_requested, lease_token, "
            "run_after, unique_key, created_at, updated_at, error, finished_at, depends_on) "
            "VALUES (:id, :title, :description, :status, :created_by, 1, :queue, :payload, "
            ":priority, :max_attempts, 0, :false, 0, :run_after, :unique_key, :now, :now, "
            ":error, :finished_at, :depends_on)"
            f"{conflict} RETURNING {JOB_COLUMNS}",
            params,
        )
        if row is not None:
            if spec.depends_on:
                await add_edges(tx, child_id=job_id, parent_ids=spec.depends_on)
            return stored_job(row), True
        existing = await tx.fetch_one(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE queue = :queue AND unique_key = :unique_key "
            f"AND {UNFINISHED}",
            {"queue": spec.queue, "unique_key": unique_key},
        )
        if existing is not None:
            return stored_job(existing), False


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
    scheduled: bool | None = None,
) -> tuple[list[dict[str, Any]], Position | None]:
    """Jobs in (`created_at`, `id`) order (or its reverse), optionally of one status and queue,
    with `search` in the title (case-insensitive), and waiting for a future time (`scheduled`)
    or not; the next page's position."""
    conditions: list[str] = []
    params: dict[str, Any] = {}
    if scheduled is not None:
        # The claim's own comparison, on the database clock.
        now = "now()" if db.dialect == "postgresql" else ":now"
        conditions.append(f"run_after {'>' if scheduled else '<='} {now}")
        if db.dialect != "postgresql":
            params["now"] = utcnow()
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
    """Delete the job if still at `expected_version` (any, when None); False if none matched.
    Jobs waiting on it are cancelled unless it had succeeded."""
    guard = " AND version = :expected" if expected_version is not None else ""
    async with db.transaction() as tx:
        row = await tx.fetch_one(
            f"DELETE FROM jobs WHERE id = :id{guard} RETURNING id, status",
            {"id": job_id, "expected": expected_version},
        )
        if row is None:
            return False
        # An unfinished parent deleted will never succeed: its waiting children are cancelled.
        children = await settle_dependents(tx, [], deleted={job_id: row["status"]})
        entries: list[ChangeEntry] = [("delete", job_id, None)]
        entries += [("update", child.id, child.body) for child in children]
        await record_changes(tx, collection="jobs", entries=entries)
    return True


async def count_jobs(db: Database) -> list[tuple[str, str, int]]:
    """(queue, status, count) for every queue and status that has jobs."""
    # The claim index (queue, status, …) answers this without reading the jobs themselves.
    rows = await db.fetch_all(
        "SELECT queue, status, count(*) AS n FROM jobs GROUP BY queue, status "
        "ORDER BY queue, status"
    )
    return [(str(row["queue"]), str(row["status"]), int(row["n"])) for row in rows]
