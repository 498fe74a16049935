"""Revisions and the change log: every write appends here in its own transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from orchestrator.db import Database, Transaction

Collection = Literal[
    "jobs", "tasks", "users", "sessions", "api_keys", "schedules", "queues", "job_logs"
]
Op = Literal["create", "update", "delete"]
COLLECTIONS: tuple[Collection, ...] = (
    "jobs",
    "tasks",
    "users",
    "sessions",
    "api_keys",
    "schedules",
    "queues",
    "job_logs",
)
NOTIFY_CHANNEL = "orch_changes"


@dataclass(frozen=True, slots=True)
class Change:
    revision: int
    collection: Collection
    op: Op
    resource_id: str
    data: str | None  # canonical JSON of the resource after the change; None for deletes


class Committed(str):
    """The payload of a change-log notification delivered in this process: the last revision
    (the text every process gets), carrying the changes themselves, as the log holds them,
    so that this process's feed can hand them on without reading them back."""

    __slots__ = ("changes",)
    changes: tuple[Change, ...]

    def __new__(cls, changes: tuple[Change, ...]) -> Committed:
        committed = super().__new__(cls, str(changes[-1].revision))
        committed.changes = changes
        return committed


def _committed(collection: Collection, entries: Sequence[ChangeEntry], *, last: int) -> Committed:
    first = last - len(entries) + 1
    return Committed(
        tuple(
            Change(
                first + n,
                collection,
                op,
                resource_id,
                data.decode() if data is not None else None,
            )
            for n, (op, resource_id, data) in enumerate(entries)
        )
    )


ChangeEntry = tuple[Op, str, bytes | None]  # op, resource id, canonical JSON (None: deleted)
# Rows per INSERT on SQLite: 6 parameters each, well inside its limit of 32,766.
_ROWS_PER_INSERT = 500


_TAKE_REVISIONS = {
    collection: f"UPDATE revision_counter SET revision = revision + :count, {collection} = "
    "revision + :count WHERE id = 1 RETURNING revision"
    for collection in COLLECTIONS
}
_APPEND_ONE = (
    "INSERT INTO changes (revision, collection, op, resource_id, data, created_at) "
    "VALUES (:r, :collection, :o, :i, :d, :created_at)"
)


async def record_change(
    tx: Transaction,
    *,
    collection: Collection,
    op: Op,
    resource_id: str,
    data: bytes | None,
) -> int:
    """Take the next revision and append the change; returns the revision (see
    `record_changes`, whose rule it shares: call it last in the transaction)."""
    return await record_changes(tx, collection=collection, entries=((op, resource_id, data),))


async def record_changes(
    tx: Transaction, *, collection: Collection, entries: Sequence[ChangeEntry]
) -> int:
    """Take the next revisions, one per entry in order, and append the changes; returns the
    last revision (the current one when `entries` is empty).

    Call it last in the transaction: the counter row stays locked until commit, which is
    what makes revisions visible in commit order, so the shorter the hold the better. On
    PostgreSQL the counter, the log rows and the notification are one statement, so the lock
    is held for that statement and the COMMIT: one round trip.
    """
    assert collection in COLLECTIONS
    count = len(entries)
    if count == 0:
        row = await tx.fetch_one("SELECT revision FROM revision_counter WHERE id = 1")
        assert row is not None
        return int(row["revision"])
    if tx.dialect == "postgresql":
        return await _record_in_one_statement(tx, collection=collection, entries=entries)
    row = await tx.fetch_one(_TAKE_REVISIONS[collection], {"count": count})
    assert row is not None
    last = int(row["revision"])
    first = last - count + 1
    created_at = datetime.now(UTC)
    if count == 1:  # the usual write: its statement made once
        op, resource_id, data = entries[0]
        await tx.execute(
            _APPEND_ONE,
            {
                "r": last,
                "collection": collection,
                "o": op,
                "i": resource_id,
                "d": data.decode() if data is not None else None,
                "created_at": created_at,
            },
        )
    for start in range(0, count if count > 1 else 0, _ROWS_PER_INSERT):
        size = min(_ROWS_PER_INSERT, count - start)
        values = ", ".join(
            f"(:r{j}, :collection, :o{j}, :i{j}, :d{j}, :created_at)" for j in range(size)
        )
        params: dict[str, object] = {"collection": collection, "created_at": created_at}
        for j in range(size):
            op, resource_id, data = entries[start + j]
            params.update(
                {
                    f"r{j}": first + start + j,
                    f"o{j}": op,
                    f"i{j}": resource_id,
                    f"d{j}": data.decode() if data is not None else None,
                }
            )
        await tx.execute(
            "INSERT INTO changes (revision, collection, op, resource_id, data, created_at) "
            f"VALUES {values}",
            params,
        )
    # Delivered at commit. Other processes get only the revision and read the log; this one's
    # feed also gets the changes.
    await tx.notify(NOTIFY_CHANNEL, _committed(collection, entries, last=last))
    return last


async def _record_in_one_statement(
    tx: Transaction, *, collection: Collection, entries: Sequence[ChangeEntry]
) -> int:
    """PostgreSQL: the counter, every log row and the NOTIFY in one statement."""
    count = len(entries)
    row = await tx.fetch_one(
        "WITH taken AS (UPDATE revision_counter SET revision = revision + :count, "
        f"{collection} = revision + :count WHERE id = 1 RETURNING revision), "
        "logged AS (INSERT INTO changes (revision, collection, op, resource_id, data, "
        "created_at) SELECT taken.revision - :count + entry.n, :collection, entry.op, "
        "entry.resource_id, entry.data, :created_at FROM taken, "
        "unnest(CAST(:ops AS text[]), CAST(:ids AS text[]), CAST(:data AS text[])) "
        "WITH ORDINALITY AS entry(op, resource_id, data, n) RETURNING revision) "
        "SELECT max(revision) AS revision, "
        "pg_notify(:channel, CAST(max(revision) AS text)) FROM logged",
        {
            "count": count,
            "collection": collection,
            "ops": [op for op, _, _ in entries],
            "ids": [resource_id for _, resource_id, _ in entries],
            "data": [data.decode() if data is not None else None for _, _, data in entries],
            "created_at": datetime.now(UTC),
            "channel": NOTIFY_CHANNEL,
        },
    )
    assert row is not None
    last = int(row["revision"])
    # Delivered at commit: other processes get the revision (NOTIFY) and read the log; this
    # one's feed also gets the changes.
    tx.notified(NOTIFY_CHANNEL, _committed(collection, entries, last=last))
    return last


async def collection_revision(db: Database, collection: Collection) -> int:
    """The revision of the last change to `collection` (0 when it never changed)."""
    assert collection in COLLECTIONS
    row = await db.fetch_one(f"SELECT {collection} AS rev FROM revision_counter WHERE id = 1")
    return int(row["rev"]) if row else 0


async def latest_revision(db: Database) -> int:
    row = await db.fetch_one("SELECT revision FROM revision_counter WHERE id = 1")
    return int(row["revision"]) if row else 0


async def changes_after(db: Database, *, revision: int, limit: int = 1000) -> list[Change]:
    """Changes with a revision above `revision`, oldest first."""
    rows = await db.fetch_all(
        "SELECT revision, collection, op, resource_id, data FROM changes "
        "WHERE revision > :revision ORDER BY revision LIMIT :limit",
        {"revision": revision, "limit": limit},
    )
    return [
        Change(int(r["revision"]), r["collection"], r["op"], r["resource_id"], r["data"])
        for r in rows
    ]


async def oldest_retained_revision(db: Database) -> int | None:
    row = await db.fetch_one("SELECT min(revision) AS rev FROM changes")
    return int(row["rev"]) if row and row["rev"] is not None else None


async def prune_changes(db: Database, *, older_than: timedelta) -> int:
    """Drop log rows past the retention window; always keeps the newest row."""
    cutoff = datetime.now(UTC) - older_than
    async with db.transaction() as tx:
        pruned: int = await tx.execute(
            "DELETE FROM changes WHERE created_at < :cutoff "
            "AND revision < (SELECT max(revision) FROM changes)",
            {"cutoff": cutoff},
        )
    return pruned
