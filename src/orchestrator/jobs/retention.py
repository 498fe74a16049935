"""Retention of finished jobs: deleted in small batches once old enough, each a delete in the
change log like any other."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog

from orchestrator.db import Database
from orchestrator.db.changelog import record_changes
from orchestrator.timestamps import utcnow

log = structlog.get_logger(__name__)

# Jobs per transaction: short enough that no claim or create waits long on the write lock.
PRUNE_BATCH = 200
# The partial index `ix_jobs_finished` covers exactly these rows.
_FINISHED = "status IN ('succeeded', 'failed', 'cancelled')"


async def prune_finished_jobs(
    db: Database, *, older_than: timedelta, batch: int = PRUNE_BATCH
) -> int:
    """Delete the jobs that finished more than `older_than` ago, oldest first, `batch` to a
    transaction; how many."""
    cutoff = utcnow() - older_than
    lock = " FOR UPDATE SKIP LOCKED" if db.dialect == "postgresql" else ""
    # The outer guard repeats the inner one: a job retried meanwhile is not finished any more.
    old = f"{_FINISHED} AND finished_at < :cutoff"
    sql = (
        f"DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE {old} "
        f"ORDER BY finished_at LIMIT :batch{lock}) AND {old} RETURNING id"
    )
    pruned = 0
    while True:
        async with db.transaction() as tx:
            rows = await tx.fetch_all(sql, {"cutoff": cutoff, "batch": batch})
            if rows:
                await record_changes(
                    tx, collection="jobs", entries=[("delete", row["id"], None) for row in rows]
                )
        pruned += len(rows)
        if len(rows) < batch:
            return pruned


def job_retention(db: Database, *, keep_days: int) -> Callable[[], Awaitable[None]]:
    """The pruner's chore for finished jobs (nothing when `keep_days` is 0: they are kept)."""

    async def prune() -> None:
        if keep_days == 0:
            return
        pruned = await prune_finished_jobs(db, older_than=timedelta(days=keep_days))
        if pruned:
            log.info("finished_jobs_pruned", jobs=pruned)

    return prune
