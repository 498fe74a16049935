"""Queues as clients see them (settings, counts, timing), and changes to their settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, get_args

import orjson

from orchestrator.db.changelog import record_change
from orchestrator.db.database import Database, Row
from orchestrator.jobs.records import JobStatus
from orchestrator.queues.counts import Reader, read_counts
from orchestrator.representation import canonical_json, etag_for
from orchestrator.timestamps import iso_text, utcnow

# Every status a job can have: each queue's counts name them all.
STATUSES: tuple[str, ...] = get_args(JobStatus)


@dataclass(frozen=True, slots=True)
class StoredQueue:
    """A queue's representation: its canonical body and the ETag of those bytes."""

    name: str
    body: bytes
    etag: str


@dataclass(frozen=True, slots=True)
class Timing:
    oldest_pending_at: str | None
    scheduled: int


async def _settings(db: Reader, name: str | None) -> dict[str, Row]:
    where = " WHERE name = :name" if name is not None else ""
    rows = await db.fetch_all(
        f"SELECT name, paused, max_running FROM queue_settings{where}",
        {"name": name} if name is not None else None,
    )
    return {str(row["name"]): row for row in rows}


async def _timing(db: Reader, queues: Sequence[str]) -> dict[str, Timing]:
    """Per queue with pending jobs: when its longest-waiting due job became due, and how many
    wait for a later time, from the pending jobs' (queue, run_after) index and the database
    clock: the first entry, and the range after now."""
    if not queues:
        return {}
    if db.dialect == "postgresql":
        now, source = "now()", "unnest(CAST(:names AS text[])) AS q(name)"
        params: dict[str, Any] = {"names": list(queues)}
    else:
        now, source = ":now", "(SELECT value AS name FROM json_each(:names)) AS q"
        params = {"names": orjson.dumps(list(queues)).decode(), "now": utcnow()}
    pending = "FROM jobs WHERE queue = q.name AND status = 'pending'"
    rows = await db.fetch_all(
        f"SELECT q.name AS name, (SELECT min(run_after) {pending} AND run_after <= {now}) "
        f"AS oldest, (SELECT count(*) {pending} AND run_after > {now}) AS scheduled "
        f"FROM {source}",
        params,
    )
    return {
        str(row["name"]): Timing(
            oldest_pending_at=iso_text(row["oldest"]) if row["oldest"] is not None else None,
            scheduled=int(row["scheduled"]),
        )
        for row in rows
    }


def _body(
    name: str, settings: Row | None, counts: dict[str, int], timing: Timing | None
) -> dict[str, Any]:
    return {
        "name": name,
        "paused": bool(settings["paused"]) if settings is not None else False,
        "max_running": (
            int(settings["max_running"])
            if settings is not None and settings["max_running"] is not None
            else None
        ),
        "counts": {status: counts.get(status, 0) for status in STATUSES},
        "scheduled": timing.scheduled if timing is not None else 0,
        "oldest_pending_at": timing.oldest_pending_at if timing is not None else None,
    }


async def _queues(db: Reader, name: str | None) -> list[dict[str, Any]]:
    counts = await read_counts(db, queue=name)
    settings = await _settings(db, name)
    names = sorted(counts.keys() | settings.keys())
    timing = await _timing(db, [q for q in names if counts.get(q, {}).get("pending")])
    return [_body(q, settings.get(q), counts.get(q, {}), timing.get(q)) for q in names]


async def list_queues(db: Database) -> list[dict[str, Any]]:
    """Every queue that has jobs or settings, by name."""
    return await _queues(db, None)


def _stored(body: dict[str, Any]) -> StoredQueue:
    data = canonical_json(body)
    return StoredQueue(name=body["name"], body=data, etag=etag_for(data))


async def get_queue(db: Database, *, name: str) -> StoredQueue | None:
    """The queue, or None when it has neither jobs nor settings."""
    found = await _queues(db, name)
    return _stored(found[0]) if found else None


async def update_queue(db: Database, *, name: str, changes: dict[str, Any]) -> StoredQueue:
    """Set the fields of `changes` (`paused`, `max_running`), making the queue's settings if it
    had none; the queue as it now is, also in the change log (collection `queues`)."""
    now: datetime = utcnow()
    assignments = "".join(f"{field} = :{field}, " for field in changes)
    params = {"name": name, "now": now, "paused": False, "max_running": None, **changes}
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO queue_settings (name, paused, max_running, version, updated_at) "
            "VALUES (:name, :paused, :max_running, 1, :now) ON CONFLICT (name) DO UPDATE SET "
            f"{assignments}version = queue_settings.version + 1, updated_at = :now",
            params,
        )
        [body] = await _queues(tx, name)
        queue = _stored(body)
        await record_change(tx, collection="queues", op="update", resource_id=name, data=queue.body)
    return queue
