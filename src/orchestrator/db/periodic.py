"""Database chores run every few seconds in every process (they are safe to run at once)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from orchestrator.background import cancel_and_wait
from orchestrator.db.database import DatabaseUnavailable

log = structlog.get_logger(__name__)


class Periodic:
    """Runs `chore` every `interval` seconds until stopped (the first time at once when
    `at_start`); a database that is down is logged and tried again next time."""

    def __init__(
        self,
        chore: Callable[[], Awaitable[None]],
        *,
        name: str,
        interval: float,
        at_start: bool = False,
    ) -> None:
        self.name = name
        self.interval = interval
        self._chore = chore
        self._at_start = at_start
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        self._stopping.set()
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        wait = not self._at_start
        while True:
            if wait:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.interval)
            wait = True
            if self._stopping.is_set():
                return
            try:
                await self._chore()
            except DatabaseUnavailable:
                log.warning(f"{self.name}_database_unavailable")
            except Exception:
                log.exception(f"{self.name}_failed")
