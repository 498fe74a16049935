"""Background work: stopping a task never swallows the cancellation of whoever stops it."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.background import cancel_and_wait


async def test_a_caller_cancelled_while_it_waits_stays_cancelled() -> None:
    release = asyncio.Event()
    winding_down = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            winding_down.set()
            await release.wait()  # winds down only when the test says so
            raise

    worker = asyncio.create_task(slow_to_stop())
    went_on: list[bool] = []

    async def stopper() -> None:
        await cancel_and_wait(worker)
        went_on.append(True)

    stopping = asyncio.create_task(stopper())
    async with asyncio.timeout(5):
        await winding_down.wait()  # the stopper has cancelled it and is waiting
        stopping.cancel()  # a shutdown cancels the one that is stopping the worker
        with pytest.raises(asyncio.CancelledError):
            await stopping
    assert stopping.cancelled()
    assert not went_on
    release.set()
    await cancel_and_wait(worker)
    assert worker.cancelled()


async def test_the_task_outcome_is_swallowed() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.wait({task})
    await cancel_and_wait(task)  # no RuntimeError, and asyncio has nothing to warn about
    await cancel_and_wait(None)
