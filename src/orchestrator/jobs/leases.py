"""Claims and leases: how a job moves once it exists.

Every transition is one guarded UPDATE (`WHERE id = :id AND status = … AND lease_token = :token`),
so a late worker, a repeated call or a race can never move a job wrongly: the statement simply
matches no row, and we then read the job only to say why (404 or 409). Times come from the
database clock: PostgreSQL's `now()`; on SQLite the server process is on the database's host,
so its clock is the database's, written in the one ISO format SQLite compares as text.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson

from orchestrator.db import Database, Row, Transaction
from orchestrator.db.changelog import Change, record_change
from orchestrator.errors import Conflict, NotFound
from orchestrator.jobs.records import JOB_COLUMNS, StoredJob, stored_job
from orchestrator.representation import canonical_json
from orchestrator.timestamps import as_utc, iso, utcnow

_RETURNING = f"RETURNING {JOB_COLUMNS}, lease_token, lease_expires_at"
SWEEP_BATCH = 100


@dataclass(frozen=True, slots=True)
class Lease:
    token: int
    expires_at: str

    def body(self) -> dict[str, Any]:
        return {"token": self.token, "expires_at": self.expires_at}


@dataclass(frozen=True, slots=True)
class Claim:
    job: StoredJob
    lease: Lease


@dataclass(frozen=True, slots=True)
class Heartbeat:
    job_id: str
    status: str
    cancel_requested: bool
    lease: Lease


# ---------------------------------------------------------------- the database clock


def _now(dialect: str) -> str:
    return "now()" if dialect == "postgresql" else ":now"


def _later(dialect: str, name: str) -> str:
    """`now + :name seconds` on the database clock."""
    if dialect == "postgresql":
        return f"(now() + make_interval(secs => :{name}))"
    return f":{name}_at"


def _clock(dialect: str, **delays: float) -> dict[str, Any]:
    """Parameters for `_now`/`_later`: seconds on PostgreSQL, instants on SQLite."""
    if dialect == "postgresql":
        return {name: float(seconds) for name, seconds in delays.items()}
    now = utcnow()
    params: dict[str, Any] = {"now": now}
    for name, seconds in delays.items():
        params[f"{name}_at"] = now + timedelta(seconds=seconds)
    return params


def _lease(row: Row) -> Lease:
    return Lease(token=int(row["lease_token"]), expires_at=iso(as_utc(row["lease_expires_at"])))


async def _transition(
    db: Database, sql: str, params: dict[str, Any]
) -> tuple[Row, StoredJob] | None:
    """Run one guarded UPDATE … RETURNING and log the change when it moved a job."""
    async with db.transaction() as tx:
        row = await tx.fetch_one(sql, params)
        if row is None:
            return None
        job = await _record(tx, row)
    return row, job


async def _record(tx: Transaction, row: Row) -> StoredJob:
    """Log the change of a moved job; its representation, built once for the log and the
    answer."""
    job = stored_job(row)
    await record_change(tx, collection="jobs", op="update", resource_id=job.id, data=job.body)
    return job


async def _current(db: Database, job_id: str) -> Row:
    row = await db.fetch_one(
        f"SELECT {JOB_COLUMNS}, lease_token FROM jobs WHERE id = :id", {"id": job_id}
    )
    if row is None:
        raise NotFound("Job not found")
    return row


async def _refuse(db: Database, *, job_id: str, token: int) -> Conflict:
    """Why a lease operation matched nothing: 404, or the 409 to raise."""
    row = await _current(db, job_id)
    if int(row["lease_token"]) != token:
        return Conflict("The lease is no longer held: the job was claimed again")
    return Conflict(f"The lease is no longer held: the job is {row['status']}")


# ------------------------------------------------------------------------- claiming


async def claim_job(
    *, db: Database, queues: Sequence[str], lease_seconds: float, worker: str
) -> Claim | None:
    """Take the highest-priority, oldest due pending job of `queues`, or None."""
    now = _now(db.dialect)
    if db.dialect == "postgresql":
        # SKIP LOCKED: concurrent claims pass over a row another claim is taking.
        pick = (
            "SELECT id FROM jobs WHERE status = 'pending' AND queue = ANY(:queues) "
            "AND run_after <= now() ORDER BY priority DESC, created_at, id "
            "LIMIT 1 FOR UPDATE SKIP LOCKED"
        )
        queue_param: Any = list(queues)
    else:
        # The immediate transaction holds the write lock: no other claim runs meanwhile.
        pick = (
            "SELECT id FROM jobs WHERE status = 'pending' "
            "AND queue IN (SELECT value FROM json_each(:queues)) "
            "AND run_after <= :now ORDER BY priority DESC, created_at, id LIMIT 1"
        )
        queue_param = orjson.dumps(list(queues)).decode()
    sql = (
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, "
        f"lease_token = lease_token + 1, lease_expires_at = {_later(db.dialect, 'lease')}, "
        f"worker = :worker, started_at = {now}, finished_at = NULL, "
        f"version = version + 1, updated_at = {now} "
        f"WHERE id = ({pick}) AND status = 'pending' {_RETURNING}"
    )
    params = {"queues": queue_param, "worker": worker, **_clock(db.dialect, lease=lease_seconds)}
    moved = await _transition(db, sql, params)
    if moved is None:
        return None
    row, job = moved
    return Claim(job=job, lease=_lease(row))


async def next_due_in(*, db: Database, queues: Sequence[str]) -> float | None:
    """Seconds until the earliest pending job of `queues` becomes due (None: there is none)."""
    if db.dialect == "postgresql":
        sql = (
            "SELECT min(run_after) AS due FROM jobs WHERE status = 'pending' "
            "AND queue = ANY(:queues)"
        )
        params: dict[str, Any] = {"queues": list(queues)}
    else:
        sql = (
            "SELECT min(run_after) AS due FROM jobs WHERE status = 'pending' "
            "AND queue IN (SELECT value FROM json_each(:queues))"
        )
        params = {"queues": orjson.dumps(list(queues)).decode()}
    row = await db.fetch_one(sql, params)
    if row is None or row["due"] is None:
        return None
    return max(0.0, (as_utc(row["due"]) - utcnow()).total_seconds())


class ClaimWaiters:
    """Claims waiting for work, woken by the change feed when a job of their queue is pending."""

    def __init__(self) -> None:
        self._waiting: dict[asyncio.Event, frozenset[str]] = {}

    def on_change(self, change: Change) -> None:
        if change.collection != "jobs" or not self._waiting or change.data is None:
            return
        body = orjson.loads(change.data)
        if body.get("status") != "pending":
            return
        for event, queues in self._waiting.items():
            if body.get("queue") in queues:
                event.set()

    async def claim(
        self,
        *,
        db: Database,
        queues: Sequence[str],
        lease_seconds: float,
        worker: str,
        wait: float,
        abandoned: asyncio.Event | None = None,
    ) -> Claim | None:
        """`claim_job`, retried on each wake-up until a job comes or `wait` seconds pass.

        Setting `abandoned` (the client has gone) ends the wait with no further attempt, so
        that no job is leased to a client that will never hear of it.
        """
        deadline = time.monotonic() + wait
        event = asyncio.Event()
        # Registered before the first attempt, so a job created in between still wakes us.
        self._waiting[event] = frozenset(queues)
        try:
            while True:
                event.clear()
                claim = await claim_job(
                    db=db, queues=queues, lease_seconds=lease_seconds, worker=worker
                )
                remaining = deadline - time.monotonic()
                if claim is not None or remaining <= 0:
                    return claim
                # A retried job is pending but not yet due: no change will announce that moment.
                due = await next_due_in(db=db, queues=queues)
                timeout = remaining if due is None else min(remaining, max(due, 0.01))
                if abandoned is None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(event.wait(), timeout)
                    continue
                if abandoned.is_set() or await _first_of(event, abandoned, timeout) is abandoned:
                    return None
        finally:
            del self._waiting[event]


async def _first_of(
    one: asyncio.Event, other: asyncio.Event, seconds: float
) -> asyncio.Event | None:
    """The event set first within `seconds`, or None."""
    waits = {asyncio.ensure_future(one.wait()): one, asyncio.ensure_future(other.wait()): other}
    try:
        done, _ = await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in waits:
            pending.cancel()
    return other if other.is_set() else (one if done else None)


# --------------------------------------------------------------- holding a lease


async def heartbeat(*, db: Database, job_id: str, token: int, lease_seconds: float) -> Heartbeat:
    """Extend the lease; the answer says whether a cancellation was requested."""
    sql = (
        f"UPDATE jobs SET lease_expires_at = {_later(db.dialect, 'lease')} "
        "WHERE id = :id AND status = 'running' AND lease_token = :token "
        "RETURNING id, status, cancel_requested, lease_token, lease_expires_at"
    )
    params = {"id": job_id, "token": token, **_clock(db.dialect, lease=lease_seconds)}
    # Not a transition: the job body does not change, so no version bump and no change.
    async with db.transaction() as tx:
        row = await tx.fetch_one(sql, params)
    if row is None:
        raise await _refuse(db, job_id=job_id, token=token)
    return Heartbeat(
        job_id=row["id"],
        status=row["status"],
        cancel_requested=bool(row["cancel_requested"]),
        lease=_lease(row),
    )


async def complete_job(*, db: Database, job_id: str, token: int, result: Any) -> StoredJob:
    """running → succeeded with `result`; repeating it with the same token is harmless."""
    now = _now(db.dialect)
    sql = (
        f"UPDATE jobs SET status = 'succeeded', result = :result, error = NULL, "
        f"finished_at = {now}, lease_expires_at = NULL, version = version + 1, updated_at = {now} "
        f"WHERE id = :id AND status = 'running' AND lease_token = :token {_RETURNING}"
    )
    params = {
        "id": job_id,
        "token": token,
        "result": canonical_json(result).decode(),
        **_clock(db.dialect),
    }
    moved = await _transition(db, sql, params)
    if moved is not None:
        return moved[1]
    current = await _current(db, job_id)
    if current["status"] == "succeeded" and int(current["lease_token"]) == token:
        return stored_job(current)
    raise await _refuse(db, job_id=job_id, token=token)


def retry_delay(*, attempts: int, base: float, cap: float) -> float:
    """Exponential backoff after the `attempts`-th failed attempt."""
    return float(min(cap, base * 2 ** min(attempts - 1, 30)))


async def fail_job(
    *,
    db: Database,
    job_id: str,
    token: int,
    error: str,
    retry: bool,
    backoff_base: float,
    backoff_cap: float,
) -> StoredJob:
    """running → pending after a backoff (attempts left), failed, or cancelled (if requested)."""
    now = _now(db.dialect)
    async with db.transaction() as tx:
        held = await tx.fetch_one(
            "SELECT attempts, max_attempts, cancel_requested FROM jobs "
            "WHERE id = :id AND status = 'running' AND lease_token = :token",
            {"id": job_id, "token": token},
        )
        job = None
        if held is not None:
            attempts = int(held["attempts"])
            delay = retry_delay(attempts=attempts, base=backoff_base, cap=backoff_cap)
            if held["cancel_requested"]:
                outcome = f"status = 'cancelled', finished_at = {now}"
            elif retry and attempts < int(held["max_attempts"]):
                outcome = f"status = 'pending', run_after = {_later(db.dialect, 'delay')}"
            else:
                outcome = f"status = 'failed', finished_at = {now}"
            # The guard repeats what we read, so a concurrent move makes this match nothing.
            row = await tx.fetch_one(
                f"UPDATE jobs SET {outcome}, error = :error, lease_expires_at = NULL, "
                f"version = version + 1, updated_at = {now} "
                "WHERE id = :id AND status = 'running' AND lease_token = :token "
                f"AND attempts = :attempts {_RETURNING}",
                {
                    "id": job_id,
                    "token": token,
                    "error": error,
                    "attempts": attempts,
                    **_clock(db.dialect, delay=delay),
                },
            )
            if row is not None:
                job = await _record(tx, row)
    if job is None:
        raise await _refuse(db, job_id=job_id, token=token)
    return job


async def release_job(*, db: Database, job_id: str, token: int) -> StoredJob:
    """running → pending at once, the attempt not counted (a worker shutting down)."""
    now = _now(db.dialect)
    sql = (
        "UPDATE jobs SET "
        "status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'pending' END, "
        "attempts = CASE WHEN cancel_requested THEN attempts ELSE attempts - 1 END, "
        f"finished_at = CASE WHEN cancel_requested THEN {now} ELSE NULL END, "
        f"run_after = {now}, lease_expires_at = NULL, version = version + 1, updated_at = {now} "
        f"WHERE id = :id AND status = 'running' AND lease_token = :token {_RETURNING}"
    )
    moved = await _transition(db, sql, {"id": job_id, "token": token, **_clock(db.dialect)})
    if moved is None:
        raise await _refuse(db, job_id=job_id, token=token)
    return moved[1]


# ------------------------------------------------------------------- cancellation


# Which jobs a cancellation moves, and how: for one job here, for many in `jobs.actions`.
CANCELLABLE = "(status = 'pending' OR (status = 'running' AND NOT cancel_requested))"


def cancel_assignments(dialect: str) -> str:
    """pending → cancelled at once; running → cancel requested (`:now` on SQLite)."""
    now = _now(dialect)
    return (
        "status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END, "
        "cancel_requested = CASE WHEN status = 'running' THEN TRUE ELSE cancel_requested END, "
        f"finished_at = CASE WHEN status = 'pending' THEN {now} ELSE finished_at END, "
        f"version = version + 1, updated_at = {now}"
    )


async def cancel_job(*, db: Database, job_id: str) -> StoredJob:
    """pending → cancelled at once; running → cancel requested; finished → 409."""
    sql = (
        f"UPDATE jobs SET {cancel_assignments(db.dialect)} "
        f"WHERE id = :id AND {CANCELLABLE} {_RETURNING}"
    )
    moved = await _transition(db, sql, {"id": job_id, **_clock(db.dialect)})
    if moved is not None:
        return moved[1]
    current = await _current(db, job_id)
    if current["status"] == "running":  # already requested: asking again changes nothing
        return stored_job(current)
    raise Conflict(f"The job is already {current['status']}")


# ----------------------------------------------------------------- stalled leases


async def sweep_expired_leases(*, db: Database) -> int:
    """Return running jobs whose lease expired: pending (attempts left), failed or cancelled.

    Safe with many sweepers at once: the UPDATE re-checks `status = 'running'` and the expiry,
    so a job another sweeper (or its worker) already moved is not matched again.
    """
    now = _now(db.dialect)
    lock = " FOR UPDATE SKIP LOCKED" if db.dialect == "postgresql" else ""
    expired = f"status = 'running' AND lease_expires_at < {now}"
    sql = (
        "UPDATE jobs SET "
        "status = CASE WHEN cancel_requested THEN 'cancelled' "
        "WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END, "
        "error = CASE WHEN cancel_requested THEN error ELSE 'lease expired' END, "
        f"finished_at = CASE WHEN cancel_requested OR attempts >= max_attempts THEN {now} "
        "ELSE NULL END, "
        f"run_after = {now}, lease_expires_at = NULL, version = version + 1, updated_at = {now} "
        f"WHERE id IN (SELECT id FROM jobs WHERE {expired} "
        f"ORDER BY lease_expires_at LIMIT {SWEEP_BATCH}{lock}) AND {expired} {_RETURNING}"
    )
    swept = 0
    while True:
        async with db.transaction() as tx:
            rows = await tx.fetch_all(sql, _clock(db.dialect))
            for row in rows:
                await _record(tx, row)
        swept += len(rows)
        if len(rows) < SWEEP_BATCH:
            return swept
