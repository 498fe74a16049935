"""Job logs from the SDK: `context.log`, `logging` routed by the worker, and the client calls."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from orchestrator.client import AsyncClient, ConflictError, JobContext, Worker, current_job
from orchestrator.client.context import _log_lines
from tests.support.apps import running_app
from tests.support.users import ADMIN_PASSWORD


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    async with running_app(tmp_path) as application:
        yield application


async def _until(check: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def lines_of(client: AsyncClient, job_id: str) -> list[str]:
    page = await client.list_job_logs(job_id, limit=1000)
    return [item["line"] for item in page["items"]]


async def test_lines_reach_the_job_while_it_runs_and_all_before_its_outcome(
    app: FastAPI,
) -> None:
    go_on = asyncio.Event()

    async def handle(job: dict[str, Any], context: JobContext) -> str:
        context.log("started")
        await go_on.wait()
        for k in range(230):
            context.log(f"step {k}")
        return "done"

    async with AsyncClient("http://127.0.0.1", transport=httpx.ASGITransport(app=app)) as client:
        await client.login("admin", ADMIN_PASSWORD)
        job = await client.create_job("logging", queue="logs")
        worker = Worker(client, ["logs"], handle, wait=0.5)
        running = asyncio.create_task(worker.run(install_signal_handlers=False))
        try:

            async def tailed() -> bool:
                return await lines_of(client, job["id"]) == ["started"]

            await _until(tailed)  # sent while the handler still runs
            go_on.set()

            async def finished() -> bool:
                return bool((await client.get_job(job["id"]))["status"] == "succeeded")

            await _until(finished)
            assert await lines_of(client, job["id"]) == ["started"] + [
                f"step {k}" for k in range(230)
            ]
        finally:
            worker.stop()
            await asyncio.wait_for(running, 10)


async def test_logging_in_handlers_goes_to_each_ones_job_with_job_log_level(
    app: FastAPI,
) -> None:
    logger = logging.getLogger("tests.handler")
    logger.setLevel(logging.DEBUG)
    both_running = threading.Barrier(2, timeout=20)

    async def handle_async(job: dict[str, Any]) -> None:
        assert current_job() is not None
        logger.info("async %s", job["name"])
        logger.debug("not at the level")

    def handle_sync(job: dict[str, Any]) -> None:
        both_running.wait()  # two jobs at once, each in its own thread
        logger.warning("sync %s", job["name"])

    async with AsyncClient("http://127.0.0.1", transport=httpx.ASGITransport(app=app)) as client:
        await client.login("admin", ADMIN_PASSWORD)
        a = await client.create_job("a", queue="la")
        b = await client.create_job("b", queue="ls")
        c = await client.create_job("c", queue="ls")
        workers = [
            Worker(client, ["la"], handle_async, wait=0.5, job_log_level=logging.INFO),
            Worker(
                client, ["ls"], handle_sync, wait=0.5, concurrency=2, job_log_level=logging.INFO
            ),
        ]
        runs = [asyncio.create_task(w.run(install_signal_handlers=False)) for w in workers]
        try:
            logger.warning("outside any job")  # goes to no job

            async def finished() -> bool:
                jobs = [await client.get_job(j["id"]) for j in (a, b, c)]
                return all(j["status"] == "succeeded" for j in jobs)

            await _until(finished)
        finally:
            for w in workers:
                w.stop()
            await asyncio.wait_for(asyncio.gather(*runs), 10)
        assert await lines_of(client, a["id"]) == ["INFO tests.handler: async a"]
        assert await lines_of(client, b["id"]) == ["WARNING tests.handler: sync b"]
        assert await lines_of(client, c["id"]) == ["WARNING tests.handler: sync c"]
    assert current_job() is None


async def test_without_job_log_level_logging_stays_out_of_the_job(app: FastAPI) -> None:
    def handle(job: dict[str, Any], context: JobContext) -> None:
        logging.getLogger("tests.handler").warning("not routed")
        context.log("routed")

    async with AsyncClient("http://127.0.0.1", transport=httpx.ASGITransport(app=app)) as client:
        await client.login("admin", ADMIN_PASSWORD)
        job = await client.create_job("quiet", queue="lq")
        worker = Worker(client, ["lq"], handle, wait=0.5)
        running = asyncio.create_task(worker.run(install_signal_handlers=False))
        try:

            async def finished() -> bool:
                return bool((await client.get_job(job["id"]))["status"] == "succeeded")

            await _until(finished)
        finally:
            worker.stop()
            await asyncio.wait_for(running, 10)
        assert await lines_of(client, job["id"]) == ["routed"]


async def test_the_client_appends_with_the_lease_it_was_given_and_pages(app: FastAPI) -> None:
    async with AsyncClient("http://127.0.0.1", transport=httpx.ASGITransport(app=app)) as client:
        await client.login("admin", ADMIN_PASSWORD)
        job = await client.create_job("direct", queue="lc")
        claimed = await client.claim(["lc"])
        assert claimed is not None
        stored = await client.append_job_logs(claimed.id, claimed.token, ["one", "two", "three"])
        assert [(i["n"], i["line"]) for i in stored] == [(1, "one"), (2, "two"), (3, "three")]
        page = await client.list_job_logs(job["id"], after=1, limit=1)
        assert ([i["line"] for i in page["items"]], page["next_after"]) == (["two"], 2)
        with pytest.raises(ConflictError):
            await client.append_job_logs(claimed.id, claimed.token + 1, ["stale"], secret="x")
        with pytest.raises(ConflictError):
            await client.append_job_logs(claimed.id, claimed.token, ["forged"], secret="x")


def test_the_context_splits_text_into_lines_the_server_takes() -> None:
    assert _log_lines("") == [""]
    assert _log_lines("a\nb\r\nc") == ["a", "b", "c"]
    assert _log_lines("nul \x00 and \ud800") == ["nul \ufffd and ?"]
    long = "é" * 5000  # 10,000 bytes
    pieces = _log_lines(long)
    assert [len(p.encode()) for p in pieces] == [4096, 4096, 1808]
    assert "".join(pieces) == long
    odd = "a" + "€" * 2000  # a cut that would fall inside a character moves before it
    assert all(len(p.encode()) <= 4096 for p in _log_lines(odd))
    assert "".join(_log_lines(odd)) == odd
