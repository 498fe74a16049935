"""Schedule queries, and firing: each fire time makes exactly one job, whichever process
(any number of them, none special) gets there first."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import structlog

from orchestrator.db import Database, Row
from orchestrator.db.changelog import record_change
from orchestrator.db.keyset import Position, keyset_page
from orchestrator.jobs.queries import JobSpec, insert_job
from orchestrator.representation import canonical_json
from orchestrator.schedules.cron import CronSchedule, InvalidSchedule, parse_schedule
from orchestrator.schedules.records import (
    SCHEDULE_COLUMNS,
    StoredSchedule,
    schedule_body,
    stored_schedule,
)
from orchestrator.timestamps import as_utc, utcnow

log = structlog.get_logger(__name__)
FIRE_BATCH = 100


def fire_key(schedule_id: str, fire_at: datetime) -> str:
    """The unique key of the job of one fire: `schedule:<id>:<fire time in UTC>`."""
    return f"schedule:{schedule_id}:{as_utc(fire_at):%Y-%m-%dT%H:%M:%SZ}"


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """What a schedule is: when it fires and the job each fire makes."""

    name: str
    cron: CronSchedule
    timezone: str
    job: dict[str, Any]
    enabled: bool


async def create_schedule(db: Database, *, spec: ScheduleSpec, created_by: str) -> StoredSchedule:
    """Insert a schedule, its first fire time computed from now (none while disabled)."""
    now = utcnow()
    async with db.transaction() as tx:
        row = await tx.fetch_one(
            "INSERT INTO schedules (id, name, cron, timezone, job, enabled, next_run_at, "
            "created_by, version, created_at, updated_at) VALUES (:id, :name, :cron, "
            ":timezone, :job, :enabled, :next_run_at, :created_by, 1, :now, :now) "
            f"RETURNING {SCHEDULE_COLUMNS}",
            {
                "id": str(uuid.uuid4()),
                "name": spec.name,
                "cron": spec.cron.expression,
                "timezone": spec.timezone,
                "job": canonical_json(spec.job).decode(),
                "enabled": spec.enabled,
                "next_run_at": spec.cron.next_fire(now) if spec.enabled else None,
                "created_by": created_by,
                "now": now,
            },
        )
        assert row is not None
        schedule = stored_schedule(row)
        await record_change(
            tx,
            collection="schedules",
            op="create",
            resource_id=schedule.id,
            data=schedule.body,
        )
    return schedule


async def get_schedule(db: Database, *, schedule_id: str) -> StoredSchedule | None:
    row = await db.fetch_one(
        f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = :id", {"id": schedule_id}
    )
    return stored_schedule(row) if row is not None else None


async def list_schedules(
    db: Database, *, after: Position | None, limit: int | None
) -> tuple[list[dict[str, Any]], Position | None]:
    """Schedules in (`created_at`, `id`) order after `after`; the next page's position."""
    return await keyset_page(
        db,
        select=f"SELECT {SCHEDULE_COLUMNS} FROM schedules",
        after=after,
        limit=limit,
        body=schedule_body,
    )


async def update_schedule(
    db: Database,
    *,
    schedule_id: str,
    expected_version: int | None,
    changes: dict[str, Any],
    timing: CronSchedule | None,
) -> StoredSchedule | None:
    """Apply `changes` if still at `expected_version` (any, when None); None if none matched.

    `timing` is the schedule's cron in its zone when the edit touched when it fires (cron,
    zone or enabled): `next_run_at` is then computed anew from now (none while disabled).
    """
    now = utcnow()
    values = dict(changes)
    if "job" in values:
        values["job"] = canonical_json(values["job"]).decode()
    if timing is not None:
        values["cron"] = timing.expression
        values["next_run_at"] = timing.next_fire(now) if values.get("enabled", True) else None
    assignments = "".join(f"{name} = :{name}, " for name in values)
    guard = " AND version = :expected" if expected_version is not None else ""
    async with db.transaction() as tx:
        row = await tx.fetch_one(
            f"UPDATE schedules SET {assignments}version = version + 1, updated_at = :now "
            f"WHERE id = :id{guard} RETURNING {SCHEDULE_COLUMNS}",
            {**values, "now": now, "id": schedule_id, "expected": expected_version},
        )
        if row is None:
            return None
        schedule = stored_schedule(row)
        await record_change(
            tx, collection="schedules", op="update", resource_id=schedule.id, data=schedule.body
        )
    return schedule


async def delete_schedule(db: Database, *, schedule_id: str, expected_version: int | None) -> bool:
    """Delete the schedule if still at `expected_version` (any, when None); False if none
    matched. The jobs it made stay."""
    guard = " AND version = :expected" if expected_version is not None else ""
    async with db.transaction() as tx:
        row = await tx.fetch_one(
            f"DELETE FROM schedules WHERE id = :id{guard} RETURNING id",
            {"id": schedule_id, "expected": expected_version},
        )
        if row is None:
            return False
        await record_change(
            tx, collection="schedules", op="delete", resource_id=schedule_id, data=None
        )
    return True


# ------------------------------------------------------------------------------ firing


def _clock(db: Database, at: datetime | None = None) -> tuple[str, dict[str, Any]]:
    """The database clock: PostgreSQL's `now()`; SQLite's host is this process's (`at`
    instead when given)."""
    if db.dialect == "postgresql":
        return ("now()", {}) if at is None else ("CAST(:now AS timestamptz)", {"now": at})
    if at is not None:
        return ":now", {"now": at}
    return ":now", {"now": utcnow()}


async def seconds_to_next_fire(db: Database) -> float | None:
    """Seconds until the earliest enabled schedule is due, on the database clock (None: none;
    zero or less: one is due now)."""
    now, params = _clock(db)
    row = await db.fetch_one(
        f"SELECT min(next_run_at) AS due, {now} AS now FROM schedules WHERE enabled", params
    )
    if row is None or row["due"] is None:
        return None
    return (as_utc(row["due"]) - as_utc(row["now"])).total_seconds()


async def fire_due(db: Database, *, at: datetime | None = None) -> int:
    """Fire every enabled schedule that is due; how many fires this process made.

    `at` stands for the database clock's reading (tests walk it across a daylight-saving
    change); the firer leaves it out.
    """
    now, params = _clock(db, at)
    rows = await db.fetch_all(
        f"SELECT id, cron, timezone, job, next_run_at, created_by, {now} AS now "
        f"FROM schedules WHERE enabled AND next_run_at <= {now} "
        f"ORDER BY next_run_at LIMIT {FIRE_BATCH}",
        params,
    )
    fired = 0
    for row in rows:
        if await _fire(db, row):
            fired += 1
    return fired


async def _fire(db: Database, row: Row) -> bool:
    """Make the job of the schedule's latest due fire time, unless another process has.

    One transaction: first the schedule's `next_run_at` moves on from the value we read, a
    guarded UPDATE that matches nothing when another process fired it first (or someone
    edited the schedule meanwhile); only then is the job inserted, with the fire's unique key.
    The guard, not the key, is what stops a second job: a fast job may already have finished
    and freed its key by the time a slow process comes.
    """
    now = as_utc(row["now"])
    try:
        cron = parse_schedule(row["cron"], row["timezone"], now=now)
    except InvalidSchedule as exc:  # the zone has left this host's time zone database
        log.warning("schedule_cannot_fire", schedule=row["id"], reason=exc.reason)
        return False
    # After downtime only the latest missed fire runs, not a backlog.
    fire_at = max(as_utc(row["next_run_at"]), cron.previous_fire(now))
    async with db.transaction() as tx:
        moved = await tx.fetch_one(
            "UPDATE schedules SET next_run_at = :next, last_fired_at = :fired, updated_at = :now "
            "WHERE id = :id AND enabled AND next_run_at = :seen RETURNING id",
            {
                "next": cron.next_fire(fire_at),
                "fired": fire_at,
                "now": now,
                "id": row["id"],
                "seen": row["next_run_at"],
            },
        )
        if moved is None:
            return False
        # A job someone made with this very key (and that is unfinished) is this fire's job.
        job, created = await insert_job(
            tx,
            spec=JobSpec(**orjson.loads(row["job"])),
            created_by=row["created_by"],
            now=now,
            run_after=now,
            unique_key=fire_key(row["id"], fire_at),
        )
        fired = await tx.fetch_one(
            f"UPDATE schedules SET last_job_id = :job_id WHERE id = :id "
            f"RETURNING {SCHEDULE_COLUMNS}",
            {"job_id": job.id, "id": row["id"]},
        )
        assert fired is not None
        schedule = stored_schedule(fired)
        if created:
            await record_change(
                tx, collection="jobs", op="create", resource_id=job.id, data=job.body
            )
        await record_change(
            tx, collection="schedules", op="update", resource_id=schedule.id, data=schedule.body
        )
    return True
