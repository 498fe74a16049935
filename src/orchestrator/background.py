"""Work that runs beside the requests: one start/stop shape for all of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol


class Background(Protocol):
    """A per-process worker (the change feed, the hub, the sweeper, the pruner)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


@asynccontextmanager
async def running(workers: Sequence[Background]) -> AsyncIterator[None]:
    """Start `workers` in order; stop the ones started, in reverse, however the block ends."""
    started: list[Background] = []
    try:
        for worker in workers:
            await worker.start()
            started.append(worker)
        yield
    finally:
        for worker in reversed(started):
            await worker.stop()


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and wait until it has ended, swallowing its outcome.

    A cancellation of the caller itself is not swallowed: it ends the wait at once. The cancel
    is repeated until the task ends: on 3.11 one can be lost inside `asyncio.wait_for`.
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1)
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not warn about it
