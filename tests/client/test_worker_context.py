"""The context a Worker hands a handler that takes one: progress rides on the heartbeats."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from orchestrator.client import AsyncClient, JobContext, Worker
from tests.support.apps import running_app
from tests.support.users import ADMIN_PASSWORD


class _Counted(httpx.AsyncBaseTransport):
    """The app's transport, counting requests by path."""

    def __init__(self, app: FastAPI) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.paths: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths[request.url.path] += 1
        return await self.inner.handle_async_request(request)


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    async with running_app(tmp_path) as application:
        yield application


async def _until(check: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_an_async_handler_reports_progress_through_its_context(app: FastAPI) -> None:
    go_on = asyncio.Event()

    async def handle(job: dict[str, Any], context: JobContext) -> str:
        context.progress(0.5, "half way")
        await go_on.wait()
        context.progress(0.75)
        return "done"

    transport = _Counted(app)
    async with AsyncClient("http://127.0.0.1", transport=transport) as client:
        await client.login("admin", ADMIN_PASSWORD)
        job = await client.create_job("progress", queue="ctx")
        worker = Worker(client, ["ctx"], handle, wait=0.5)
        running = asyncio.create_task(worker.run(install_signal_handlers=False))
        try:

            async def shows(progress: float, message: str | None) -> bool:
                body = await client.get_job(job["id"])
                return bool((body["progress"], body["progress_message"]) == (progress, message))

            await _until(lambda: shows(0.5, "half way"))
            go_on.set()

            async def finished() -> bool:
                return bool((await client.get_job(job["id"]))["status"] == "succeeded")

            await _until(finished)
        finally:
            worker.stop()
            await asyncio.wait_for(running, 10)
        body = await client.get_job(job["id"])
        # The last progress may or may not beat the report; the report ends the job either way.
        assert body["result"] == "done"
        assert body["progress"] in (0.5, 0.75)
    # Progress costs no request of its own: it rides on the batched heartbeat.
    single = [path for path in transport.paths if path.endswith(f"{job['id']}/heartbeat")]
    assert single == [], transport.paths


async def test_a_plain_function_handler_reports_progress_from_its_thread(app: FastAPI) -> None:
    go_on = threading.Event()

    def handle(job: dict[str, Any], context: JobContext) -> None:
        context.progress(0.2, f"working on {job['name']}")
        go_on.wait(30)

    async with AsyncClient("http://127.0.0.1", transport=httpx.ASGITransport(app=app)) as client:
        await client.login("admin", ADMIN_PASSWORD)
        job = await client.create_job("threaded", queue="ctx")
        worker = Worker(client, ["ctx"], handle, wait=0.5)
        running = asyncio.create_task(worker.run(install_signal_handlers=False))
        try:

            async def shows() -> bool:
                body = await client.get_job(job["id"])
                return bool(body["progress_message"] == "working on threaded")

            await _until(shows)
            assert (await client.get_job(job["id"]))["progress"] == 0.2
        finally:
            go_on.set()
            worker.stop()
            await asyncio.wait_for(running, 10)


@pytest.mark.parametrize("fraction", [1.5, -0.1, float("nan"), True])
def test_the_context_refuses_progress_outside_0_to_1(fraction: Any) -> None:
    from orchestrator.client.calls import JobClaim

    context = JobContext(JobClaim(job={"id": "x"}, token=1, expires_at=""))
    with pytest.raises(ValueError, match="from 0 to 1"):
        context.progress(fraction)
    with pytest.raises(ValueError, match="1000"):
        context.progress(0.5, "x" * 1001)
    assert not context.has_progress


async def _run_until_done(
    client: AsyncClient, worker: Worker, job_ids: list[str]
) -> list[dict[str, Any]]:
    running = asyncio.create_task(worker.run(install_signal_handlers=False))
    try:

        async def finished() -> bool:
            jobs = [await client.get_job(job_id) for job_id in job_ids]
            return all(job["status"] in ("succeeded", "failed") for job in jobs)

        await _until(finished)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 10)
    return [await client.get_job(job_id) for job_id in job_ids]


async def test_a_handler_reads_its_parents_results_through_its_context(app: FastAPI) -> None:
    async def handle(job: dict[str, Any], context: JobContext) -> Any:
        if not context.parent_ids:
            return job["payload"]["n"]
        parents = await context.parents()
        assert list(parents) == context.parent_ids == job["depends_on"]
        return sum(parent["result"] for parent in parents.values())

    def handle_in_thread(job: dict[str, Any], context: JobContext) -> Any:
        return {"seen": sorted(p["result"] for p in context.parents_from_thread().values())}

    async with AsyncClient("http://127.0.0.1", transport=httpx.ASGITransport(app=app)) as client:
        await client.login("admin", ADMIN_PASSWORD)
        two = await client.create_job("two", queue="flow", payload={"n": 2})
        three = await client.create_job("three", queue="flow", payload={"n": 3})
        total = await client.create_job("sum", queue="flow", depends_on=[two["id"], three["id"]])
        assert total["status"] == "waiting"
        done = await _run_until_done(
            client,
            Worker(client, ["flow"], handle, wait=0.5, concurrency=2),
            [two["id"], three["id"], total["id"]],
        )
        assert [job["result"] for job in done] == [2, 3, 5]
        seen = await client.create_job("seen", queue="threads", depends_on=[two["id"], total["id"]])
        [job] = await _run_until_done(
            client, Worker(client, ["threads"], handle_in_thread, wait=0.5), [seen["id"]]
        )
        assert job["result"] == {"seen": [2, 5]}
