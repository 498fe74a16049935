"""Task queries: every write is one transaction that ends with its change-log entry."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from orchestrator.db import Database, Row, Transaction
from orchestrator.db.changelog import record_change
from orchestrator.db.idempotency import IdempotentRequest, create_once
from orchestrator.db.keyset import Position, keyset_page
from orchestrator.representation import canonical_json, etag_for
from orchestrator.tasks.records import TASK_COLUMNS, task_body
from orchestrator.timestamps import utcnow


@dataclass(frozen=True, slots=True)
class StoredTask:
    """A task's representation: its canonical body, the ETag of those bytes, its version."""

    id: str
    version: int
    body: bytes
    etag: str


def _stored(row: Row) -> StoredTask:
    body = canonical_json(task_body(row))
    return StoredTask(id=row["id"], version=int(row["version"]), body=body, etag=etag_for(body))


async def create_task(
    db: Database,
    *,
    title: str,
    description: str | None,
    created_by: str,
    idempotency: IdempotentRequest | None = None,
) -> StoredTask:
    """Insert a task; with `idempotency`, raises DuplicateRequest if the key won elsewhere."""
    now = utcnow()

    async def insert(tx: Transaction) -> StoredTask:
        row = await tx.fetch_one(
            "INSERT INTO tasks (id, title, description, version, created_by, created_at, "
            "updated_at) VALUES (:id, :title, :description, 1, :created_by, :now, :now) "
            f"RETURNING {TASK_COLUMNS}",
            {
                "id": str(uuid.uuid4()),
                "title": title,
                "description": description,
                "created_by": created_by,
                "now": now,
            },
        )
        assert row is not None
        return _stored(row)

    return await create_once(db, collection="tasks", insert=insert, idempotency=idempotency)


async def get_task(db: Database, *, task_id: str) -> StoredTask | None:
    row = await db.fetch_one(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = :id", {"id": task_id})
    return _stored(row) if row is not None else None


async def list_tasks(
    db: Database, *, after: Position | None, limit: int | None
) -> tuple[list[dict[str, Any]], Position | None]:
    """Tasks in (`created_at`, `id`) order after `after`; the position of the next page."""
    return await keyset_page(
        db, select=f"SELECT {TASK_COLUMNS} FROM tasks", after=after, limit=limit, body=task_body
    )


async def update_task(
    db: Database, *, task_id: str, expected_version: int | None, changes: dict[str, str | None]
) -> StoredTask | None:
    """Apply `changes` if the task is still at `expected_version` (any, when None).

    None when no row matched: the task is gone or someone else changed it first. The version
    check is part of the UPDATE, so two writers can never both succeed from one version.
    """
    assignments = "".join(f"{name} = :{name}, " for name in changes)
    guard = " AND version = :expected" if expected_version is not None else ""
    async with db.transaction() as tx:
        row = await tx.fetch_one(
            f"UPDATE tasks SET {assignments}version = version + 1, updated_at = :now "
            f"WHERE id = :id{guard} RETURNING {TASK_COLUMNS}",
            {**changes, "now": utcnow(), "id": task_id, "expected": expected_version},
        )
        if row is None:
            return None
        task = _stored(row)
        await record_change(
            tx,
            collection="tasks",
            op="update",
            resource_id=task.id,
            data=task.body,
        )
    return task


async def delete_task(db: Database, *, task_id: str, expected_version: int | None) -> bool:
    """Delete the task if still at `expected_version` (any, when None); False if none matched."""
    guard = " AND version = :expected" if expected_version is not None else ""
    async with db.transaction() as tx:
        row = await tx.fetch_one(
            f"DELETE FROM tasks WHERE id = :id{guard} RETURNING id",
            {"id": task_id, "expected": expected_version},
        )
        if row is None:
            return False
        await record_change(tx, collection="tasks", op="delete", resource_id=task_id, data=None)
    return True
