"""The sweeper: every process periodically returns jobs whose lease expired."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from orchestrator.db import Database, DatabaseUnavailable
from orchestrator.jobs.leases import sweep_expired_leases

log = structlog.get_logger(__name__)


class Sweeper:
    def __init__(
        self, db: Database, *, interval: float, on_expired: Callable[[int], object] | None = None
    ) -> None:
        self.db = db
        self.interval = interval
        self.on_expired = on_expired
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lease-sweeper")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            while not self._task.done():
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=1)
            self._task = None

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)
            if self._stop.is_set():
                return
            try:
                swept = await sweep_expired_leases(db=self.db)
            except DatabaseUnavailable:
                log.warning("lease_sweep_database_unavailable")
                continue
            except Exception:
                log.exception("lease_sweep_error")
                continue
            if swept:
                log.info("expired_leases_swept", jobs=swept)
                if self.on_expired is not None:
                    self.on_expired(swept)
