"""Task queries: every write is one transaction that ends with its change-log entry."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from orchestrator.db import ConstraintViolation, Database, Row
from orchestrator.db.changelog import record_change
from orchestrator.db.idempotency import DuplicateRequest, IdempotentRequest, remember_response
from orchestrator.db.keyset import Position
from orchestrator.representation import canonical_json, etag_for
from orchestrator.tasks.records import TASK_COLUMNS, task_body
from orchestrator.timestamps import as_utc, utcnow


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
    try:
        async with db.transaction() as tx:
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
            task = _stored(row)
            if idempotency is not None:
                await remember_response(
                    tx, request=idempotency, status_code=201, resource_id=task.id, body=task.body
                )
            await record_change(
                tx,
                collection="tasks",
                op="create",
                resource_id=task.id,
                data=task.body,
            )
    except ConstraintViolation:
        if idempotency is None:
            raise
        raise DuplicateRequest() from None
    return task


async def get_task(db: Database, *, task_id: str) -> StoredTask | None:
    row = await db.fetch_one(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = :id", {"id": task_id})
    return _stored(row) if row is not None else None


async def list_tasks(
    db: Database, *, after: Position | None, limit: int | None
) -> tuple[list[dict[str, Any]], Position | None]:
    """Tasks in (`created_at`, `id`) order after `after`; the position of the next page."""
    where, params = _after(after)
    sql = f"SELECT {TASK_COLUMNS} FROM tasks{where} ORDER BY created_at, id"
    if limit is not None:
        sql += " LIMIT :limit"
        params["limit"] = limit + 1
    rows = await db.fetch_all(sql, params)
    more = limit is not None and len(rows) > limit
    if more:
        rows = rows[:limit]
    items = [task_body(row) for row in rows]
    last = rows[-1] if more else None
    return items, Position(as_utc(last["created_at"]), last["id"]) if last is not None else None


def _after(after: Position | None) -> tuple[str, dict[str, Any]]:
    if after is None:
        return "", {}
    return (
        " WHERE (created_at > :after_at OR (created_at = :after_at AND id > :after_id))",
        {"after_at": after.created_at, "after_id": after.id},
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
