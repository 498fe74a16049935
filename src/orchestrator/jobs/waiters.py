"""Claims that wait for work: one is woken per job that becomes pending, and when one is due;
a claim held back by its queue's settings (paused, or at its `max_running`) also when a job of
that queue stops running, and every claim of a queue when its settings change.

Waking every waiting claim for each new job made each retry its query: ten transactions per
job in a drain. A job wakes one waiting claim of its queue instead, the one waiting longest;
a woken claim that leaves without trying again (it got jobs, its wait ended, its client went
away) hands its wake-up on, so that a job never waits for a claim that nobody will make.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import orjson

from orchestrator.db import Database
from orchestrator.db.changelog import Change
from orchestrator.jobs.leases import Claim, ClaimSpec, Holder, LeaseKeys, claim_jobs
from orchestrator.timestamps import as_utc, utcnow

# A pending job's body as the change log holds it (canonical JSON: compact, keys sorted):
# the few changes that contain this are parsed, the rest are not.
_PENDING = '"status":"pending"'
# On PostgreSQL a claim of several queues locks the first rows of each and takes the best:
# a concurrent claim that skipped those rows looks again this soon, once they are free.
RECHECK_SECONDS = 0.05


class _Waiter:
    __slots__ = ("held", "queues", "woken", "woken_for")

    def __init__(self, queues: Sequence[str]) -> None:
        self.queues = tuple(queues)
        self.woken = asyncio.Event()
        self.woken_for = ""
        self.held: tuple[str, ...] = ()  # its queues that gave nothing at its last attempt


class ClaimWaiters:
    """The claims of this process that wait for work, by queue, in the order they came."""

    def __init__(self) -> None:
        self._waiting: dict[str, dict[_Waiter, None]] = {}
        self._due: dict[str, tuple[float, asyncio.TimerHandle]] = {}
        self._holding = 0  # waiting claims held back by some queue's settings

    def on_change(self, change: Change) -> None:
        """A change-feed listener: a job that became pending wakes one claim of its queue, as
        does a job that stopped running in a queue a claim was held back from; new settings
        of a queue wake all its claims."""
        if not self._waiting:
            return
        if change.collection == "queues":
            for waiter in self._waiting.get(change.resource_id, ()):
                waiter.woken_for = change.resource_id
                waiter.woken.set()
            return
        if change.collection != "jobs" or change.data is None:
            return
        if _PENDING not in change.data and not self._holding:
            return
        body = orjson.loads(change.data)
        queue, status = str(body.get("queue")), body.get("status")
        if status == "pending" or (status != "running" and self._held_back(queue)):
            self._wake_one(queue)

    def _hold(self, waiter: _Waiter, held: tuple[str, ...]) -> None:
        self._holding += bool(held) - bool(waiter.held)
        waiter.held = held

    def _held_back(self, queue: str) -> bool:
        return any(queue in waiter.held for waiter in self._waiting.get(queue, ()))

    def _wake_one(self, queue: str) -> bool:
        for waiter in self._waiting.get(queue, ()):
            if not waiter.woken.is_set():
                waiter.woken_for = queue
                waiter.woken.set()
                return True
        return False

    def _wake_when_due(self, queue: str, seconds: float) -> None:
        """Wake one claim of `queue` in `seconds`, when its next job is due (no change says so)."""
        loop = asyncio.get_running_loop()
        at = loop.time() + seconds
        scheduled = self._due.get(queue)
        if scheduled is not None:
            if scheduled[0] <= at:
                return
            scheduled[1].cancel()
        self._due[queue] = (at, loop.call_at(at, self._now_due, queue))

    def _now_due(self, queue: str) -> None:
        del self._due[queue]
        self._wake_one(queue)

    async def claim(
        self,
        *,
        db: Database,
        keys: LeaseKeys,
        holder: Holder,
        spec: ClaimSpec,
        wait: float,
        abandoned: asyncio.Event | None = None,
    ) -> list[Claim]:
        """`claim_jobs`, tried again on each wake-up until jobs come or `wait` seconds pass.

        Setting `abandoned` (the client has gone) ends the wait with no further attempt, so
        that no job is leased to a client that will never hear of it.
        """
        deadline = time.monotonic() + wait
        waiter = _Waiter(spec.queues)
        # Registered before the first attempt, so a job created in between still wakes us.
        for queue in waiter.queues:
            self._waiting.setdefault(queue, {})[waiter] = None
        rechecked = not (db.dialect == "postgresql" and len(spec.queues) > 1)
        try:
            while True:
                waiter.woken.clear()
                claimed = await claim_jobs(db=db, keys=keys, holder=holder, spec=spec)
                self._hold(waiter, claimed.held)
                remaining = deadline - time.monotonic()
                if claimed.claims or remaining <= 0:
                    return claimed.claims
                # A held queue's due jobs wait for its settings or a free slot, not the clock.
                free = [queue for queue in spec.queues if queue not in claimed.held]
                due = await next_due(db=db, queues=free) if free else None
                if due is not None:
                    self._wake_when_due(*due)
                if not rechecked:
                    rechecked, remaining = True, min(remaining, RECHECK_SECONDS)
                if await _woken(waiter.woken, abandoned, remaining):
                    continue
                if abandoned is not None and abandoned.is_set():
                    return []
        finally:
            self._hold(waiter, ())
            for queue in waiter.queues:
                waiting = self._waiting[queue]
                del waiting[waiter]
                if not waiting:
                    del self._waiting[queue]
            if waiter.woken.is_set():  # a wake-up this claim will not act on goes to another
                self._wake_one(waiter.woken_for)


async def _woken(woken: asyncio.Event, abandoned: asyncio.Event | None, seconds: float) -> bool:
    """Wait up to `seconds` for `woken`; False when the time is up or `abandoned` is set."""
    if abandoned is not None and abandoned.is_set():
        return False
    waits = [asyncio.ensure_future(woken.wait())]
    if abandoned is not None:
        waits.append(asyncio.ensure_future(abandoned.wait()))
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in waits:
            pending.cancel()
    return woken.is_set() and not (abandoned is not None and abandoned.is_set())


async def next_due(*, db: Database, queues: Sequence[str]) -> tuple[str, float] | None:
    """The queue whose pending job is due first, and in how many seconds (None: no job)."""
    names = {f"q{n}": queue for n, queue in enumerate(queues)}
    rows = await db.fetch_all(
        "SELECT queue, min(run_after) AS due FROM jobs WHERE status = 'pending' "
        f"AND queue IN ({', '.join(':' + name for name in names)}) GROUP BY queue",
        names,
    )
    dues = [(as_utc(row["due"]), str(row["queue"])) for row in rows if row["due"] is not None]
    if not dues:
        return None
    due, queue = min(dues)
    return queue, max(0.0, (due - utcnow()).total_seconds())
