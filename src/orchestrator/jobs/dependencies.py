"""Dependencies between jobs: a job `waiting` for its parents, and what a parent's end does to it.

A child waits until every parent has succeeded, then becomes `pending`; when a parent fails
for good, is cancelled or is deleted unfinished, its waiting children are cancelled, theirs
after them, down the chain. Both happen in the transaction that moved the parent, by
`settle_dependents`, and are logged there like any transition.

On PostgreSQL (read committed) three rules keep concurrent transactions from missing each
other; SQLite runs one write transaction at a time and needs none of them:
- whoever makes a job wait on a parent (a create, a retry) locks the parent's row first and
  then reads its status, so it either waits for a completing parent to commit and sees it
  succeeded, or commits first and is seen by the parent's transaction. A create never waits
  for one parent's lock while it holds another's: a worker's report or a bulk action locks
  many jobs in an order of its own, and the two would deadlock (see `_flag_parents`);
- a parent's transaction locks its waiting children (in id order) before it reads whether
  their other parents succeeded, in a later statement: of two parents of one child finishing
  at once, the second to take the lock sees the first's commit;
- a cancellation goes one level a statement, so each level sees the children that were
  created under the last one while it waited for their lock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from orchestrator.db import Row, Transaction
from orchestrator.errors import Unprocessable
from orchestrator.jobs.records import JOB_COLUMNS, StoredJob, stored_job
from orchestrator.timestamps import utcnow

# How a parent's end is told in its cancelled children's `error`.
FAILED = "failed"
CANCELLED = "was cancelled"
DELETED = "was deleted"
_ENDS = {"failed": FAILED, "cancelled": CANCELLED}


def cancelled_by(parent_id: str, end: str) -> str:
    """The `error` of a job cancelled because of its parent."""
    return f"parent job {parent_id} {end}"


@dataclass(frozen=True, slots=True)
class Start:
    """How a new job with parents starts: `waiting`, `pending` (every parent succeeded), or
    `cancelled` with an error naming a parent that failed or was cancelled."""

    status: str
    error: str | None = None


def _now(dialect: str) -> str:
    return "now()" if dialect == "postgresql" else ":now"


def _in(dialect: str, name: str) -> str:
    """A set of ids given as one parameter `name` (see `_ids`)."""
    if dialect == "postgresql":
        return f"(SELECT unnest(CAST(:{name} AS varchar[])))"
    return f"(SELECT value FROM json_each(:{name}))"


def _ids(dialect: str, ids: Sequence[str]) -> Any:
    return list(ids) if dialect == "postgresql" else orjson.dumps(list(ids)).decode()


_FLAG = (
    "UPDATE jobs SET has_dependents = TRUE WHERE id IN "
    "(SELECT id FROM jobs WHERE id IN {ids}{lock}) RETURNING id, status"
)
# How many times a create waits for a parent another transaction holds, before it waits for
# them all in id order (PostgreSQL's deadlock detection is then the last resort).
_LOCK_ROUNDS = 100


class _Busy(Exception):
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id


class _Waited(Exception):
    pass


async def _flag_parents(tx: Transaction, parent_ids: Sequence[str]) -> list[Row]:
    """Flag the existing ones of `parent_ids` as parents, their rows locked, and return their
    ids and statuses, read under the locks.

    On PostgreSQL a create takes the rows it can at once (SKIP LOCKED) and, when another
    transaction holds one, lets go of them all (a savepoint's rollback) and waits for that
    one alone, then tries again: it never holds a parent while it waits for another. A
    worker's report and a bulk action lock many jobs in orders of their own, so waiting while
    holding could close a cycle, which PostgreSQL breaks by aborting a transaction after a
    second (measured: creates naming 100 parents while a report completed them answered 500).
    """
    ids = _ids(tx.dialect, parent_ids)
    within = _in(tx.dialect, "ids")
    if tx.dialect != "postgresql":  # one writer at a time: nothing is ever held by another
        return await tx.fetch_all(_FLAG.format(ids=within, lock=""), {"ids": ids})
    for _ in range(_LOCK_ROUNDS):
        try:
            async with tx.savepoint():
                rows = await tx.fetch_all(
                    _FLAG.format(ids=within, lock=" FOR UPDATE SKIP LOCKED"), {"ids": ids}
                )
                if len(rows) == len(parent_ids):
                    return rows
                taken = {row["id"] for row in rows}
                present = await tx.fetch_all(
                    f"SELECT id FROM jobs WHERE id IN {within}", {"ids": ids}
                )
                busy = [row["id"] for row in present if row["id"] not in taken]
                if not busy:
                    return rows  # the others do not exist
                raise _Busy(busy[0])
        except _Busy as held:
            # Holding none of them: wait until that row's holder has committed, and let go.
            try:
                async with tx.savepoint():
                    await tx.fetch_all(
                        "SELECT id FROM jobs WHERE id = :id FOR UPDATE", {"id": held.job_id}
                    )
                    raise _Waited
            except _Waited:
                pass
    return await tx.fetch_all(
        _FLAG.format(ids=within, lock=" ORDER BY id FOR UPDATE"), {"ids": ids}
    )


async def lock_new_parents(tx: Transaction, *, parent_ids: Sequence[str]) -> Start:
    """How a new child of `parent_ids` (distinct, existing) starts, its parents locked.

    Unprocessable, naming the first unknown id, when one does not exist (the transaction's
    rollback undoes the rest). The caller then inserts the child and, if it did, its edges
    (`add_edges`), in the same transaction.
    """
    rows = await _flag_parents(tx, parent_ids)
    status = {row["id"]: row["status"] for row in rows}
    unknown = [job_id for job_id in parent_ids if job_id not in status]
    if unknown:
        raise Unprocessable(
            f"depends_on names job {unknown[0]}, which does not exist",
            details=[{"field": "depends_on", "reason": f"no job {job_id}"} for job_id in unknown],
        )
    start = Start(status="pending")
    for job_id in parent_ids:
        end = _ENDS.get(status[job_id])
        if end is not None:
            start = Start(status="cancelled", error=cancelled_by(job_id, end))
            break
        if status[job_id] != "succeeded":
            start = Start(status="waiting")
    return start


async def add_edges(tx: Transaction, *, child_id: str, parent_ids: Sequence[str]) -> None:
    """Record that `child_id` (just inserted) depends on each of `parent_ids`."""
    if tx.dialect == "postgresql":
        edges = "SELECT :child, unnest(CAST(:ids AS varchar[]))"
    else:
        edges = "SELECT :child, value FROM json_each(:ids)"
    await tx.execute(
        f"INSERT INTO job_dependencies (child, parent) {edges}",
        {"child": child_id, "ids": _ids(tx.dialect, parent_ids)},
    )


# Whether a job has a parent that has not succeeded (a deleted parent holds nothing back).
UNMET = (
    "EXISTS (SELECT 1 FROM job_dependencies AS d JOIN jobs AS p ON p.id = d.parent "
    "WHERE d.child = jobs.id AND p.status <> 'succeeded')"
)


async def lock_parents(tx: Transaction, *, child_ids: str, params: Mapping[str, Any]) -> None:
    """PostgreSQL: lock (shared) the parents of the jobs of the subquery `child_ids` before a
    statement reads their statuses (see the module's first rule). Nothing on SQLite."""
    if tx.dialect != "postgresql":
        return
    await tx.fetch_all(
        "SELECT id FROM jobs WHERE id IN (SELECT parent FROM job_dependencies "
        f"WHERE child IN {child_ids}) ORDER BY id FOR SHARE",
        dict(params),
    )


async def settle_dependents(
    tx: Transaction, jobs: Sequence[StoredJob], *, deleted: Mapping[str, str] | None = None
) -> list[StoredJob]:
    """The children moved because of `jobs` (just moved in `tx`) and of `deleted` (id →
    status of jobs just deleted), in the order to log them: waiting → pending for those whose
    parents have now all succeeded; waiting → cancelled below a parent that ended otherwise."""
    succeeded = [job.id for job in jobs if job.has_dependents and job.status == "succeeded"]
    ended = {
        job.id: _ENDS[job.status] for job in jobs if job.has_dependents and job.status in _ENDS
    }
    for job_id, status in (deleted or {}).items():
        if status != "succeeded":
            ended[job_id] = DELETED
    moved: list[StoredJob] = []
    if succeeded:
        moved += await _promote(tx, succeeded)
    if ended:
        moved += await _cancel_down(tx, ended)
    return moved


def _clock(dialect: str) -> dict[str, datetime]:
    return {} if dialect == "postgresql" else {"now": utcnow()}


async def _lock_children(tx: Transaction, parents: str, params: Mapping[str, Any]) -> None:
    """PostgreSQL: lock the waiting children of the parents of the subquery `parents`, in id
    order (see the module's second rule)."""
    if tx.dialect == "postgresql":
        await tx.fetch_all(
            "SELECT id FROM jobs WHERE id IN (SELECT child FROM job_dependencies "
            f"WHERE parent IN {parents}) AND status = 'waiting' ORDER BY id FOR UPDATE",
            dict(params),
        )


async def _promote(tx: Transaction, parent_ids: Sequence[str]) -> list[StoredJob]:
    dialect = tx.dialect
    params = {"ids": _ids(dialect, parent_ids), **_clock(dialect)}
    parents = _in(dialect, "ids")
    await _lock_children(tx, parents, params)
    now = _now(dialect)
    # Due from now on (or at its own later `run_at`): it takes its place in line as it
    # becomes pending, as a new job would.
    rows = await tx.fetch_all(
        "UPDATE jobs SET status = 'pending', "
        f"run_after = CASE WHEN run_after > {now} THEN run_after ELSE {now} END, "
        f"version = version + 1, updated_at = {now} "
        "WHERE id IN (SELECT child FROM job_dependencies WHERE parent IN "
        f"{parents}) AND status = 'waiting' AND NOT {UNMET} RETURNING {JOB_COLUMNS}",
        params,
    )
    return sorted((stored_job(row) for row in rows), key=lambda job: job.id)


async def _cancel_down(tx: Transaction, ended: Mapping[str, str]) -> list[StoredJob]:
    """Cancel the waiting children of `ended` (parent id → how it ended), then theirs, one
    level a statement, each with an error naming its own parent."""
    dialect = tx.dialect
    now = _now(dialect)
    moved: list[StoredJob] = []
    level = dict(ended)
    while level:
        rows = [[parent, cancelled_by(parent, end)] for parent, end in sorted(level.items())]
        if dialect == "postgresql":
            source = (
                "unnest(CAST(:parents AS varchar[]), CAST(:errors AS text[])) AS v(parent, error)"
            )
            params: dict[str, Any] = {
                "parents": [row[0] for row in rows],
                "errors": [row[1] for row in rows],
            }
        else:
            source = (
                "(SELECT value ->> 0 AS parent, value ->> 1 AS error FROM json_each(:rows)) AS v"
            )
            params = {"rows": orjson.dumps(rows).decode(), **_clock(dialect)}
        await _lock_children(
            tx,
            "(SELECT unnest(CAST(:parents AS varchar[])))"
            if dialect == "postgresql"
            else "(SELECT value ->> 0 FROM json_each(:rows))",
            params,
        )
        # A child of several ended parents names the first of them (by id).
        found = await tx.fetch_all(
            "UPDATE jobs SET status = 'cancelled', error = c.why, "
            f"finished_at = {now}, version = version + 1, updated_at = {now} "
            "FROM (SELECT d.child, min(v.error) AS why FROM job_dependencies AS d "
            f"JOIN {source} ON d.parent = v.parent GROUP BY d.child) AS c "
            f"WHERE jobs.id = c.child AND jobs.status = 'waiting' RETURNING {JOB_COLUMNS}",
            params,
        )
        level_jobs = sorted((stored_job(row) for row in found), key=lambda job: job.id)
        moved += level_jobs
        level = {job.id: CANCELLED for job in level_jobs if job.has_dependents}
    return moved
