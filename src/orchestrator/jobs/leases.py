"""Claims and leases: how a job moves once it exists.

Every transition is a guarded UPDATE (`WHERE id = … AND status = 'running' AND lease_token = …
AND lease_owner = …`), so a late worker, a repeated call or a race can never move a job
wrongly: the statement simply matches no row, and we then read the job once to say why (404,
403 or 409). A call about several jobs moves them in one transaction, one statement per kind of
move, with their change-log entries appended together by the last statement before COMMIT.
Times come from the database clock: PostgreSQL's `now()`; on SQLite the server process is on
the database's host, so its clock is the database's, written in the one ISO format SQLite
compares as text.

A lease is the fencing token (a counter: a late holder's calls are refused) and a secret that
only the claim's answer carries: an HMAC of the job and its token under a key derived from the
service's secret key, so that every process can check it and none has to store it.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import orjson

from orchestrator.db import Database, Row, Transaction
from orchestrator.db.changelog import ChangeEntry, record_changes
from orchestrator.errors import ApiError, Conflict, Forbidden, NotFound
from orchestrator.jobs.dependencies import settle_dependents
from orchestrator.jobs.records import JOB_COLUMNS, StoredJob, stored_job
from orchestrator.queues.limits import claim_rooms
from orchestrator.timestamps import as_utc, iso, utcnow

SWEEP_BATCH = 100
# Progress reaches the change feed at most this often per job; the row always holds the latest.
PROGRESS_INTERVAL_SECONDS = 1.0
SECRET_BYTES = 24  # 192 bits
_RETURNING = f"RETURNING {JOB_COLUMNS}, lease_token, lease_expires_at"
_STALE = "The lease is no longer held: the job was claimed again"

Verb = Literal["complete", "fail", "release"]
VERBS: tuple[Verb, ...] = ("complete", "fail", "release")


# ------------------------------------------------------------------------ the parties


@dataclass(frozen=True, slots=True)
class Holder:
    """Who makes a lease call: the account's id, and whether it is an admin (who may use any
    account's lease, with its secret)."""

    account: str
    admin: bool


@dataclass(frozen=True, slots=True)
class LeaseRef:
    """A lease as a call names it: the job, the fencing token and the lease's secret."""

    job_id: str
    token: int
    secret: str


@dataclass(frozen=True, slots=True)
class Progress:
    """What a heartbeat says of its job's progress: a fraction from 0 to 1 and a message, each
    kept as it was when not given."""

    fraction: float | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    token: int
    secret: str
    expires_at: str

    def body(self) -> dict[str, Any]:
        return {"token": self.token, "secret": self.secret, "expires_at": self.expires_at}


@dataclass(frozen=True, slots=True)
class Claim:
    job: StoredJob
    lease: Lease

    def body(self) -> dict[str, Any]:
        return {"job": orjson.Fragment(self.job.body), "lease": self.lease.body()}


@dataclass(frozen=True, slots=True)
class Claimed:
    """What a claim took, and which of its queues gave nothing because of their settings
    (paused, or at their `max_running`)."""

    claims: list[Claim]
    held: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Heartbeat:
    job_id: str
    status: str
    cancel_requested: bool
    lease: Lease

    def body(self) -> dict[str, Any]:
        return {
            "id": self.job_id,
            "status": self.status,
            "cancel_requested": self.cancel_requested,
            "lease": self.lease.body(),
        }


@dataclass(frozen=True, slots=True)
class ClaimSpec:
    """What a claim asks for: up to `max_jobs` due jobs of `queues`, each leased for
    `lease_seconds` to the worker named `worker`."""

    queues: tuple[str, ...]
    max_jobs: int
    lease_seconds: float
    worker: str


@dataclass(frozen=True, slots=True)
class Report:
    """What a worker says about a job it holds: complete (with the result's canonical JSON),
    fail (with an error, retried while attempts remain unless `retry` is false) or release."""

    lease: LeaseRef
    verb: Verb
    result: str | None = None
    error: str = "failed"
    retry: bool = True


@dataclass(frozen=True, slots=True)
class Backoff:
    """A failed attempt is retried after `base * 2 ** (attempts - 1)` seconds, at most `cap`."""

    base: float
    cap: float


# A report's outcome: the job as it now is, or why it was refused (its status says which).
Outcome = StoredJob | ApiError


class LeaseKeys:
    """The secret of each lease, derived from the job, its token and the service's key."""

    def __init__(self, secret_key: str) -> None:
        self._key = hmac.digest(secret_key.encode(), b"orchestrator lease secret v1", "sha256")

    def secret(self, job_id: str, token: int) -> str:
        mac = hmac.digest(self._key, f"{job_id}/{token}".encode(), "sha256")[:SECRET_BYTES]
        return base64.urlsafe_b64encode(mac).decode()

    def holds(self, lease: LeaseRef) -> bool:
        """Whether `lease` carries the secret of its job and token (in constant time)."""
        expected = self.secret(lease.job_id, lease.token).encode()
        return hmac.compare_digest(expected, lease.secret.encode())


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


def _retry_at(dialect: str) -> str:
    """When a failed attempt is retried: now + min(cap, base * 2 ** (attempts - 1)), in SQL,
    so that the one UPDATE that fails a job also schedules its retry."""
    if dialect == "postgresql":
        return (
            "(now() + make_interval(secs => LEAST(:backoff_cap, "
            ":backoff_base * power(2, LEAST(attempts - 1, 30)))))"
        )
    # The text SQLite compares: `strftime`'s milliseconds padded to our microseconds.
    return (
        "(strftime('%Y-%m-%dT%H:%M:%f', :now, '+' || printf('%.6f', min(:backoff_cap, "
        ":backoff_base * (1 << min(attempts - 1, 30)))) || ' seconds') || '000+00:00')"
    )


def retry_delay(*, attempts: int, base: float, cap: float) -> float:
    """Exponential backoff after the `attempts`-th failed attempt (what `_retry_at` computes)."""
    return float(min(cap, base * 2 ** min(attempts - 1, 30)))


# ------------------------------------------------------------------------ statements


def _rows(
    dialect: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]
) -> tuple[str, dict[str, Any]]:
    """A FROM item `v(column, …)` over `rows`: `unnest` of one array per column on
    PostgreSQL, `json_each` over one JSON array of rows on SQLite. Each is one parameter
    whatever the number of rows, so a batch is one statement (and one round trip)."""
    names = ", ".join(name for name, _ in columns)
    if dialect == "postgresql":
        arrays = ", ".join(f"CAST(:v_{name} AS {kind}[])" for name, kind in columns)
        params = {f"v_{name}": [row[i] for row in rows] for i, (name, _) in enumerate(columns)}
        return f"unnest({arrays}) AS v({names})", params
    picks = ", ".join(f"value ->> {i} AS {name}" for i, (name, _) in enumerate(columns))
    return f"(SELECT {picks} FROM json_each(:v_rows)) AS v", {"v_rows": orjson.dumps(rows).decode()}


def _held(holder: Holder) -> tuple[str, dict[str, Any]]:
    """The guard that a lease is this holder's (any account's, for an admin)."""
    if holder.admin:
        return "", {}
    return " AND jobs.lease_owner = :owner", {"owner": holder.account}


def _lease(keys: LeaseKeys, row: Row) -> Lease:
    token = int(row["lease_token"])
    return Lease(
        token=token,
        secret=keys.secret(row["id"], token),
        expires_at=iso(as_utc(row["lease_expires_at"])),
    )


def _pick(dialect: str, rooms: dict[str, int], count: int) -> tuple[str, dict[str, Any]]:
    """The ids of up to `count` due pending jobs of the queues of `rooms`, at most `rooms[q]`
    of queue q, highest priority first, then the job due first: one ordered probe of the claim
    index per queue, reading only the rows it returns (a filter over a list of queues would
    read and sort every pending job)."""
    queues = list(rooms)
    params: dict[str, Any] = {"pick": count}
    order = "ORDER BY priority DESC, run_after, id"
    due = f"status = 'pending' AND run_after <= {_now(dialect)}"
    if dialect == "postgresql":
        # SKIP LOCKED: concurrent claims pass over rows another claim is taking.
        if len(queues) == 1:
            params.update(q0=queues[0], pick=min(count, rooms[queues[0]]))
            sql = (
                f"SELECT id FROM jobs WHERE queue = :q0 AND {due} {order} LIMIT :pick "
                "FOR UPDATE SKIP LOCKED"
            )
            return sql, params
        # Rows locked in one queue but not taken are free again at COMMIT.
        params["queues"] = queues
        params["rooms"] = [min(count, rooms[queue]) for queue in queues]
        sql = (
            "SELECT c.id FROM unnest(CAST(:queues AS text[]), CAST(:rooms AS integer[])) "
            "AS q(name, room) CROSS JOIN LATERAL "
            f"(SELECT id, priority, run_after FROM jobs WHERE queue = q.name AND {due} {order} "
            "LIMIT q.room FOR UPDATE SKIP LOCKED) AS c "
            "ORDER BY c.priority DESC, c.run_after, c.id LIMIT :pick"
        )
        return sql, params
    # The transaction holds SQLite's write lock: no other claim runs meanwhile. Without
    # statistics SQLite's planner prefers an index with a range on run_after, then sorts every
    # due job of the queue; the claim index gives them in order, so the probe reads `room`.
    probes = []
    jobs = "jobs INDEXED BY ix_jobs_pending_due"
    for n, queue in enumerate(queues):
        params[f"q{n}"] = queue
        params[f"room{n}"] = min(count, rooms[queue])
        probes.append(
            f"SELECT * FROM (SELECT id, priority, run_after FROM {jobs} WHERE queue = :q{n} "
            f"AND {due} {order} LIMIT :room{n})"
        )
    if len(probes) == 1:
        return f"SELECT id FROM {jobs} WHERE queue = :q0 AND {due} {order} LIMIT :room0", params
    return f"SELECT id FROM ({' UNION ALL '.join(probes)}) {order} LIMIT :pick", params


async def _claim(
    tx: Transaction, dialect: str, keys: LeaseKeys, holder: Holder, spec: ClaimSpec
) -> Claimed:
    rooms = await claim_rooms(tx, queues=spec.queues, want=spec.max_jobs)
    if not rooms.open:
        return Claimed(claims=[], held=rooms.held)
    pick, params = _pick(dialect, rooms.open, spec.max_jobs)
    now = _now(dialect)
    rows = await tx.fetch_all(
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, "
        "lease_token = lease_token + 1, lease_owner = :owner, "
        f"lease_expires_at = {_later(dialect, 'lease')}, worker = :worker, started_at = {now}, "
        "progress = NULL, progress_message = NULL, progress_at = NULL, progress_pending = FALSE, "
        f"finished_at = NULL, version = version + 1, updated_at = {now} "
        f"WHERE id IN ({pick}) {_RETURNING}",
        {
            **params,
            "owner": holder.account,
            "worker": spec.worker,
            **_clock(dialect, lease=spec.lease_seconds),
        },
    )
    # In the order claimed (an UPDATE returns its rows in no particular order).
    rows.sort(key=lambda r: (-int(r["priority"]), r["run_after"], r["id"]))
    claims = [Claim(job=stored_job(row), lease=_lease(keys, row)) for row in rows]
    return Claimed(claims=claims, held=rooms.held)


def _report_statement(
    dialect: str, verb: Verb, reports: Sequence[Report], holder: Holder, backoff: Backoff
) -> tuple[str, dict[str, Any]]:
    """One guarded UPDATE moving every job of `reports` (all of one verb) that its lease holds."""
    now = _now(dialect)
    held, params = _held(holder)
    params.update(_clock(dialect))
    guard = "jobs.id = v.job_id AND jobs.status = 'running' AND jobs.lease_token = v.held"
    if verb == "complete":
        source, rows = _rows(
            dialect,
            (("job_id", "text"), ("held", "bigint"), ("new_result", "text")),
            [(r.lease.job_id, r.lease.token, r.result) for r in reports],
        )
        moves = (
            "status = 'succeeded', result = v.new_result, error = NULL, "
            f"finished_at = {now}, lease_expires_at = NULL"
        )
    elif verb == "fail":
        source, rows = _rows(
            dialect,
            (("job_id", "text"), ("held", "bigint"), ("new_error", "text"), ("may_retry", "bool")),
            [(r.lease.job_id, r.lease.token, r.error, r.retry) for r in reports],
        )
        # A requested cancellation wins; else a retry after the backoff while attempts remain.
        retried = "NOT cancel_requested AND v.may_retry AND attempts < max_attempts"
        moves = (
            "status = CASE WHEN cancel_requested THEN 'cancelled' "
            f"WHEN {retried} THEN 'pending' ELSE 'failed' END, "
            f"run_after = CASE WHEN {retried} THEN {_retry_at(dialect)} ELSE run_after END, "
            f"finished_at = CASE WHEN {retried} THEN NULL ELSE {now} END, "
            "error = v.new_error, lease_expires_at = NULL"
        )
        params.update(backoff_base=float(backoff.base), backoff_cap=float(backoff.cap))
    else:
        source, rows = _rows(
            dialect,
            (("job_id", "text"), ("held", "bigint")),
            [(r.lease.job_id, r.lease.token) for r in reports],
        )
        # The attempt is not counted, and the job keeps its place (its run_after) in line.
        moves = (
            "status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'pending' END, "
            "attempts = CASE WHEN cancel_requested THEN attempts ELSE attempts - 1 END, "
            f"finished_at = CASE WHEN cancel_requested THEN {now} ELSE NULL END, "
            "lease_expires_at = NULL"
        )
    # The change of a transition carries the latest progress: none is left for the feed.
    sql = (
        f"UPDATE jobs SET {moves}, progress_pending = FALSE, version = version + 1, "
        f"updated_at = {now} FROM {source} WHERE {guard}{held} {_RETURNING}"
    )
    return sql, {**params, **rows}


async def _record(tx: Transaction, jobs: Sequence[StoredJob]) -> None:
    if jobs:
        entries: list[ChangeEntry] = [("update", job.id, job.body) for job in jobs]
        await record_changes(tx, collection="jobs", entries=entries)


# ----------------------------------------------------------------- explaining refusals


async def _current(db: Database, job_ids: Sequence[str]) -> dict[str, Row]:
    """The jobs of `job_ids` that exist, read once for every refusal of a call."""
    names = {f"id{n}": job_id for n, job_id in enumerate(dict.fromkeys(job_ids))}
    rows = await db.fetch_all(
        f"SELECT {JOB_COLUMNS}, lease_token, lease_owner FROM jobs "
        f"WHERE id IN ({', '.join(':' + name for name in names)})",
        names,
    )
    return {row["id"]: row for row in rows}


def _refusal(row: Row | None, lease: LeaseRef, holder: Holder) -> ApiError:
    """Why a lease call about `row` matched nothing."""
    if row is None:
        return NotFound("Job not found")
    if int(row["lease_token"]) != lease.token:
        return Conflict(_STALE)
    if row["status"] == "running" and not holder.admin and row["lease_owner"] != holder.account:
        return Forbidden("The lease belongs to another account")
    return Conflict(f"The lease is no longer held: the job is {row['status']}")


async def lease_refusal(db: Database, lease: LeaseRef, holder: Holder) -> ApiError:
    """Why a guarded statement about `lease` matched nothing (404, 403 or 409)."""
    row = (await _current(db, [lease.job_id])).get(lease.job_id)
    return _refusal(row, lease, holder)


def stale_lease() -> Conflict:
    """The refusal of a lease whose secret is wrong: it says no more than a stale token."""
    return Conflict(_STALE)


def lease_guard(holder: Holder) -> tuple[str, dict[str, Any]]:
    """The condition (on `jobs`) that the lease is this holder's, and its parameters: the
    job is running under that token (`:held`) and, but for an admin, this account's."""
    owner, params = _held(holder)
    return f"jobs.status = 'running' AND jobs.lease_token = :held{owner}", params


def db_now(dialect: str) -> tuple[str, dict[str, Any]]:
    """Now on the database clock, as SQL and its parameters."""
    return _now(dialect), _clock(dialect)


def _repeated(row: Row, report: Report, holder: Holder) -> bool:
    """A complete repeated with the token that completed the job: answered as the first was."""
    return (
        report.verb == "complete"
        and row["status"] == "succeeded"
        and int(row["lease_token"]) == report.lease.token
        and (holder.admin or row["lease_owner"] == holder.account)
    )


# ------------------------------------------------------------------------ the calls


async def claim_jobs(*, db: Database, keys: LeaseKeys, holder: Holder, spec: ClaimSpec) -> Claimed:
    """Take up to `spec.max_jobs` due pending jobs of `spec.queues`, as their queues' settings
    allow (none: an empty list)."""
    async with db.transaction() as tx:
        claimed = await _claim(tx, db.dialect, keys, holder, spec)
        await _record(tx, [claim.job for claim in claimed.claims])
    return claimed


async def report(
    *,
    db: Database,
    keys: LeaseKeys,
    holder: Holder,
    reports: Sequence[Report],
    backoff: Backoff,
    claim: ClaimSpec | None = None,
) -> tuple[list[Outcome], list[Claim]]:
    """Apply `reports` and, with `claim`, take the next jobs, in one transaction; each report's
    outcome is the job as it now is or why it was refused, without touching the others (a job
    reported twice in one call: the first report counts, the second is refused)."""
    outcomes: list[Outcome | None] = [None] * len(reports)
    held: dict[Verb, list[int]] = {verb: [] for verb in VERBS}
    seen: set[str] = set()
    for n, item in enumerate(reports):
        if item.lease.job_id in seen:
            outcomes[n] = Conflict("The job is reported more than once in this call")
        elif keys.holds(item.lease):
            held[item.verb].append(n)
        else:
            outcomes[n] = Conflict(_STALE)  # a wrong secret says no more than a stale token
        seen.add(item.lease.job_id)
    claims: list[Claim] = []
    async with db.transaction() as tx:
        for verb, indexes in held.items():
            if indexes:
                sql, params = _report_statement(
                    db.dialect, verb, [reports[n] for n in indexes], holder, backoff
                )
                moved = {row["id"]: stored_job(row) for row in await tx.fetch_all(sql, params)}
                for n in indexes:
                    outcomes[n] = moved.get(reports[n].lease.job_id)
        changed = [job for job in outcomes if isinstance(job, StoredJob)]
        # Before the claim: a child made pending here may be claimed by it.
        dependents = await settle_dependents(tx, changed)
        if claim is not None and claim.max_jobs > 0:
            claims = (await _claim(tx, db.dialect, keys, holder, claim)).claims
        await _record(tx, [*changed, *dependents, *(c.job for c in claims)])
    unexplained = [n for n, outcome in enumerate(outcomes) if outcome is None]
    if unexplained:
        rows = await _current(db, [reports[n].lease.job_id for n in unexplained])
        for n in unexplained:
            row = rows.get(reports[n].lease.job_id)
            if row is not None and _repeated(row, reports[n], holder):
                outcomes[n] = stored_job(row)
            else:
                outcomes[n] = _refusal(row, reports[n].lease, holder)
    return [outcome for outcome in outcomes if outcome is not None], claims


async def heartbeat(
    *,
    db: Database,
    keys: LeaseKeys,
    holder: Holder,
    leases: Sequence[LeaseRef],
    lease_seconds: float,
    progress: Sequence[Progress | None] | None = None,
) -> list[Heartbeat | ApiError]:
    """Extend each lease by `lease_seconds` and store the progress given with it; each answer
    says whether a cancellation of its job was requested, or why the lease is no longer held.

    Not a transition: the lease alone changes no version and logs nothing. Progress is stored
    at once (a read shows the latest); it reaches the change feed as an update of the job at
    most once every `PROGRESS_INTERVAL_SECONDS` per job. Progress stored within that second is
    marked pending and carried by the first heartbeat after it (with or without progress), or
    by the job's next transition, whichever comes first.
    """
    given = list(progress) if progress is not None else [None] * len(leases)
    answers: list[Heartbeat | ApiError | None] = [
        None if keys.holds(lease) else Conflict(_STALE) for lease in leases
    ]
    live = [
        (lease, told)
        for lease, told, answer in zip(leases, given, answers, strict=True)
        if answer is None
    ]
    beats: dict[str, Row] = {}
    if live:
        async with db.transaction() as tx:
            rows = await _extend(tx, db.dialect, holder, live, lease_seconds)
            beats = {row["id"]: row for row in rows}
            if any(told is not None for _, told in live) or any(
                row["progress_pending"] for row in rows
            ):
                await _record(tx, await _progress_changes(tx, db.dialect, list(beats)))
    missing = [
        lease
        for lease, _ in live
        if lease.job_id not in beats or int(beats[lease.job_id]["lease_token"]) != lease.token
    ]
    current = await _current(db, [lease.job_id for lease in missing]) if missing else {}
    result: list[Heartbeat | ApiError] = []
    for lease, refused in zip(leases, answers, strict=True):
        row = beats.get(lease.job_id)
        if refused is not None:
            result.append(refused)
        elif row is None or int(row["lease_token"]) != lease.token:
            result.append(_refusal(current.get(lease.job_id), lease, holder))
        else:
            result.append(
                Heartbeat(
                    job_id=row["id"],
                    status=row["status"],
                    cancel_requested=bool(row["cancel_requested"]),
                    lease=_lease(keys, row),
                )
            )
    return result


async def _extend(
    tx: Transaction,
    dialect: str,
    holder: Holder,
    live: Sequence[tuple[LeaseRef, Progress | None]],
    lease_seconds: float,
) -> list[Row]:
    """One guarded UPDATE: every held lease extended, the progress given stored (pending)."""
    source, params = _rows(
        dialect,
        (
            ("job_id", "text"),
            ("held", "bigint"),
            ("new_progress", "float8"),
            ("new_message", "text"),
        ),
        [
            (
                lease.job_id,
                lease.token,
                told.fraction if told is not None else None,
                told.message if told is not None else None,
            )
            for lease, told in live
        ],
    )
    guard, owner = _held(holder)
    news = (
        "(v.new_progress IS NOT NULL AND v.new_progress IS DISTINCT FROM jobs.progress) OR "
        "(v.new_message IS NOT NULL AND v.new_message IS DISTINCT FROM jobs.progress_message)"
    )
    return await tx.fetch_all(
        f"UPDATE jobs SET lease_expires_at = {_later(dialect, 'lease')}, "
        "progress = COALESCE(v.new_progress, jobs.progress), "
        "progress_message = COALESCE(v.new_message, jobs.progress_message), "
        f"progress_pending = (jobs.progress_pending OR {news}) "
        f"FROM {source} WHERE jobs.id = v.job_id AND jobs.status = 'running' "
        f"AND jobs.lease_token = v.held{guard} "
        "RETURNING id, status, cancel_requested, lease_token, lease_expires_at, progress_pending",
        {**params, **owner, **_clock(dialect, lease=lease_seconds)},
    )


async def _progress_changes(
    tx: Transaction, dialect: str, job_ids: Sequence[str]
) -> list[StoredJob]:
    """The jobs of `job_ids` whose pending progress may reach the feed now (none did in the
    last second): each marked as delivered, a new version to log."""
    source, params = _rows(dialect, (("job_id", "text"),), [(job_id,) for job_id in job_ids])
    now = _now(dialect)
    rows = await tx.fetch_all(
        f"UPDATE jobs SET progress_at = {now}, progress_pending = FALSE, "
        f"version = version + 1, updated_at = {now} FROM {source} "
        "WHERE jobs.id = v.job_id AND jobs.status = 'running' AND jobs.progress_pending "
        f"AND (jobs.progress_at IS NULL OR jobs.progress_at <= {_later(dialect, 'gap')}) "
        f"{_RETURNING}",
        {**params, **_clock(dialect, gap=-PROGRESS_INTERVAL_SECONDS)},
    )
    return [stored_job(row) for row in rows]


# ------------------------------------------------------------------- cancellation


# Which jobs a cancellation moves, and how: for one job here, for many in `jobs.actions`.
CANCELLABLE = "(status IN ('waiting', 'pending') OR (status = 'running' AND NOT cancel_requested))"


def cancel_assignments(dialect: str) -> str:
    """waiting or pending → cancelled at once; running → cancel requested (`:now` on SQLite)."""
    now = _now(dialect)
    queued = "status IN ('waiting', 'pending')"
    return (
        f"status = CASE WHEN {queued} THEN 'cancelled' ELSE status END, "
        "cancel_requested = CASE WHEN status = 'running' THEN TRUE ELSE cancel_requested END, "
        f"finished_at = CASE WHEN {queued} THEN {now} ELSE finished_at END, "
        f"version = version + 1, updated_at = {now}"
    )


async def cancel_job(*, db: Database, job_id: str, username: str, admin: bool) -> StoredJob:
    """waiting or pending → cancelled at once (and the jobs waiting on it, down the chain);
    running → cancel requested; finished → 409. Only the job's creator or an admin may cancel
    it (403), as only they may delete it."""
    creator = "" if admin else " AND created_by = :username"
    async with db.transaction() as tx:
        row = await tx.fetch_one(
            f"UPDATE jobs SET {cancel_assignments(db.dialect)} "
            f"WHERE id = :id AND {CANCELLABLE}{creator} {_RETURNING}",
            {"id": job_id, "username": username, **_clock(db.dialect)},
        )
        job = stored_job(row) if row is not None else None
        if job is not None:
            await _record(tx, [job, *await settle_dependents(tx, [job])])
    if job is not None:
        return job
    current = (await _current(db, [job_id])).get(job_id)
    if current is None:
        raise NotFound("Job not found")
    if not admin and current["created_by"] != username:
        raise Forbidden("Only the job's creator or an admin may cancel it")
    if current["status"] == "running":  # already requested: asking again changes nothing
        return stored_job(current)
    raise Conflict(f"The job is already {current['status']}")


# ------------------------------------------------------------------- stalled leases


async def sweep_expired_leases(*, db: Database) -> int:
    """Return running jobs whose lease expired: pending (attempts left), failed or cancelled
    (and then the jobs waiting on them).

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
        "lease_expires_at = NULL, progress_pending = FALSE, version = version + 1, "
        f"updated_at = {now} WHERE id IN (SELECT id FROM jobs WHERE {expired} "
        f"ORDER BY lease_expires_at LIMIT {SWEEP_BATCH}{lock}) AND {expired} {_RETURNING}"
    )
    swept = 0
    while True:
        async with db.transaction() as tx:
            rows = await tx.fetch_all(sql, _clock(db.dialect))
            jobs = [stored_job(row) for row in rows]
            await _record(tx, [*jobs, *await settle_dependents(tx, jobs)])
        swept += len(rows)
        if len(rows) < SWEEP_BATCH:
            return swept
