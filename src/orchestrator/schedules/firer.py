"""The schedule firer: every process wakes at the next fire time and fires what is due.

Any number of processes may run it at once and none is special: each fire is one guarded
statement (`schedules.queries.fire_due`), so the first process there makes the job and the
others match nothing. It sleeps until the earliest `next_run_at` (not a coarse poll), and a
change to any schedule, from this process or through the change feed from another, wakes it
to look again.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from orchestrator.background import cancel_and_wait
from orchestrator.db import Database, DatabaseUnavailable
from orchestrator.db.changelog import Change
from orchestrator.schedules.queries import FIRE_BATCH, fire_due, seconds_to_next_fire

log = structlog.get_logger(__name__)

# Looked at again at least this often, in case a wake-up was lost.
MAX_SLEEP_SECONDS = 30.0
# A timer can end a hair before the instant it aimed at: aim just past it.
PAST_DUE = 0.002
# After a failure, or when what is due cannot be fired here (logged once per attempt).
RETRY_SECONDS = 1.0


class ScheduleFirer:
    """Fires due schedules in this process (a `Background` worker)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def on_change(self, change: Change) -> None:
        """A feed listener: a schedule was created, edited, fired or deleted."""
        if change.collection == "schedules":
            self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="schedule_firer")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            await self._sleep(await self._fire())

    async def _fire(self) -> float:
        """Fire what is due; how long to sleep before looking again."""
        try:
            fired = await fire_due(self.db)
            due = await seconds_to_next_fire(self.db)
        except DatabaseUnavailable:
            log.warning("schedule_firer_database_unavailable")
            return RETRY_SECONDS
        except Exception:
            log.exception("schedule_firer_failed")
            return RETRY_SECONDS
        if fired:
            log.debug("schedules_fired", fires=fired)
        if due is None:
            return MAX_SLEEP_SECONDS
        if due <= 0:
            # More due than one batch: go on at once. Due and yet not fired here: a schedule
            # this host cannot compute (logged); do not spin on it.
            return 0.0 if fired >= FIRE_BATCH else RETRY_SECONDS
        return min(MAX_SLEEP_SECONDS, due + PAST_DUE)

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), seconds)
