"""Job logs: lines a running job's lease holder appends, numbered 1, 2, … per job.

An append is one transaction: the guarded UPDATE that checks the lease also takes the next
numbers (`log_seq`), which locks the job's row, so appends to one job are numbered, stored,
pruned and logged as changes in the same order; their change-log entry (collection
`job_logs`, the job's id, the lines) is the last statement, so the feed carries each job's
lines in order with no gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from orchestrator.db import Database
from orchestrator.db.changelog import record_change
from orchestrator.errors import NotFound
from orchestrator.jobs.leases import (
    Holder,
    LeaseKeys,
    LeaseRef,
    db_now,
    lease_guard,
    lease_refusal,
    stale_lease,
)
from orchestrator.representation import canonical_json
from orchestrator.timestamps import iso_text

MAX_LINES_PER_CALL = 100
MAX_LINE_BYTES = 4096
# A job keeps its newest lines; older ones are pruned by the append that passes this.
KEEP_LINES = 10_000


@dataclass(frozen=True, slots=True)
class LogPage:
    """Lines of a job after some number, oldest first, and whether more follow."""

    items: list[dict[str, Any]]
    more: bool


def _lines_source(dialect: str, lines: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """The lines as rows `(line, k)`, k from 1: one parameter however many lines."""
    if dialect == "postgresql":
        return (
            "unnest(CAST(:lines AS text[])) WITH ORDINALITY AS l(line, k)",
            {"lines": list(lines)},
        )
    return (
        "(SELECT value AS line, key + 1 AS k FROM json_each(:lines)) AS l",
        {"lines": orjson.dumps(list(lines)).decode()},
    )


async def append_logs(
    *, db: Database, keys: LeaseKeys, holder: Holder, lease: LeaseRef, lines: Sequence[str]
) -> list[dict[str, Any]]:
    """Append `lines` to the job `lease` holds; the lines as stored (`n`, `line`,
    `created_at`). Raises 409 for a stale or wrong lease, 403 for another account's, 404."""
    if not keys.holds(lease):
        raise stale_lease()
    guard, params = lease_guard(holder)
    now, clock = db_now(db.dialect)
    source, rows = _lines_source(db.dialect, lines)
    count = len(lines)
    async with db.transaction() as tx:
        row = await tx.fetch_one(
            f"UPDATE jobs SET log_seq = log_seq + :count WHERE jobs.id = :job_id AND {guard} "
            f"RETURNING log_seq, {now} AS at",
            {**params, **clock, "count": count, "job_id": lease.job_id, "held": lease.token},
        )
        if row is not None:
            last = int(row["log_seq"])
            at = row["at"]
            first = last - count + 1
            await tx.execute(
                "INSERT INTO job_logs (job_id, n, line, created_at) "
                f"SELECT CAST(:job_id AS VARCHAR(36)), :before + l.k, l.line, {now} "
                f"FROM {source}",
                {**rows, **clock, "job_id": lease.job_id, "before": first - 1},
            )
            if last > KEEP_LINES:
                await tx.execute(
                    "DELETE FROM job_logs WHERE job_id = :job_id AND n <= :cut",
                    {"job_id": lease.job_id, "cut": last - KEEP_LINES},
                )
            created_at = iso_text(at)
            items = [
                {"n": first + k, "line": line, "created_at": created_at}
                for k, line in enumerate(lines)
            ]
            await record_change(
                tx,
                collection="job_logs",
                op="create",
                resource_id=lease.job_id,
                data=canonical_json({"job_id": lease.job_id, "lines": items}),
            )
    if row is None:
        raise await lease_refusal(db, lease, holder)
    return items


async def list_logs(*, db: Database, job_id: str, after: int, limit: int) -> LogPage:
    """Up to `limit` lines of the job numbered above `after`, oldest first; 404 when there
    is no such job."""
    job = await db.fetch_one("SELECT id FROM jobs WHERE id = :id", {"id": job_id})
    if job is None:
        raise NotFound("No such job")
    found = await db.fetch_all(
        "SELECT n, line, created_at FROM job_logs WHERE job_id = :id AND n > :after "
        "ORDER BY n LIMIT :limit",
        {"id": job_id, "after": after, "limit": limit + 1},
    )
    items = [
        {"n": int(r["n"]), "line": r["line"], "created_at": iso_text(r["created_at"])}
        for r in found[:limit]
    ]
    return LogPage(items=items, more=len(found) > limit)
