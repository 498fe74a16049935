"""Jobs per queue and status, as the triggers of migration 0008 keep them: read in one small
query whatever the number of jobs, never by counting the jobs themselves."""

from __future__ import annotations

from orchestrator.db import Database, Transaction
from orchestrator.db.periodic import Periodic

# pg_try_advisory_xact_lock's key for folding (any process may; one does at a time).
_FOLD_LOCK = 0x0F01D_C0047
FOLD_SECONDS = 1.0


# What counts and settings are read through: the database, or a transaction in progress.
Reader = Database | Transaction


async def read_counts(db: Reader, *, queue: str | None = None) -> dict[str, dict[str, int]]:
    """{queue: {status: jobs}} for the queues that have jobs (or one queue's, if given)."""
    where = " WHERE queue = :queue" if queue is not None else ""
    if db.dialect == "postgresql":
        # The folded counts plus the changes appended since the last fold.
        sql = (
            "SELECT queue, status, sum(n) AS n FROM (SELECT queue, status, n FROM queue_counts"
            f"{where} UNION ALL SELECT queue, status, n FROM queue_count_deltas{where}) AS c "
            "GROUP BY queue, status"
        )
    else:
        sql = f"SELECT queue, status, n FROM queue_counts{where}"
    counts: dict[str, dict[str, int]] = {}
    for row in await db.fetch_all(sql, {"queue": queue} if queue is not None else None):
        n = int(row["n"])
        if n:
            counts.setdefault(str(row["queue"]), {})[str(row["status"])] = n
    return counts


async def fold_counts(db: Database) -> None:
    """PostgreSQL: add the appended changes into `queue_counts` (one process at a time; the
    others find the lock taken and leave it), dropping counts that fell to zero."""
    if db.dialect != "postgresql":
        return
    async with db.transaction() as tx:
        row = await tx.fetch_one(
            "SELECT pg_try_advisory_xact_lock(:key) AS locked", {"key": _FOLD_LOCK}
        )
        if row is None or not row["locked"]:
            return
        folded = await tx.execute(
            "WITH folded AS (DELETE FROM queue_count_deltas RETURNING queue, status, n) "
            "INSERT INTO queue_counts (queue, status, n) SELECT queue, status, sum(n) "
            "FROM folded GROUP BY queue, status ORDER BY queue, status "
            "ON CONFLICT (queue, status) DO UPDATE SET n = queue_counts.n + excluded.n"
        )
        if folded:
            await tx.execute("DELETE FROM queue_counts WHERE n = 0")


def count_folder(db: Database) -> Periodic:
    """Every second, fold the counts' appended changes (PostgreSQL; nothing on SQLite)."""

    async def fold() -> None:
        await fold_counts(db)

    return Periodic(fold, name="queue_counts_fold", interval=FOLD_SECONDS)
