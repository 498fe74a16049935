"""Conditional GETs of the task list: a 304 on 10,000 tasks against one on 10, and a full 200.

In-process: requests go straight into the ASGI app (the whole middleware stack, routing, JWT
auth and the database, SQLite by default), no sockets, so the figures compare our own work.

    .venv/bin/python bench/conditional_get.py [--requests 2000] [--database-url postgresql://…]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from starlette.types import Message

from orchestrator.app import create_app
from orchestrator.config import Settings
from orchestrator.db.migrate import upgrade
from orchestrator.http.lists import ListCache
from orchestrator.services import Services
from orchestrator.tasks.queries import create_task

LIST = b"/api/v1/collab/state/tasks"


@asynccontextmanager
async def running_app(directory: Path, database_url: str | None) -> AsyncIterator[FastAPI]:
    url = database_url or f"sqlite:///{directory / 'bench.db'}"
    await asyncio.to_thread(upgrade, url)
    settings = Settings(
        environment="test",
        data_dir=directory,
        database_url=url,
        secret_key="bench-secret-key-" + "x" * 32,
        admin_password="bench-admin-password",
        log_level="WARNING",
        rate_limit_enabled=False,  # measures the read path, not the limiter
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


async def call(
    app: FastAPI, path: bytes, headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One GET straight through the ASGI interface."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path.decode(),
        "raw_path": path,
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "app": app,
    }
    status = 0
    response_headers: dict[bytes, bytes] = {}
    chunks: list[bytes] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers.update(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, response_headers, b"".join(chunks)


async def fill(services: Services, count: int) -> None:
    for n in range(count):
        await create_task(
            services.db, title=f"task {n}", description="benchmark task " * 4, created_by="admin"
        )


def token_for(services: Services) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {services.tokens.issue('admin')}".encode())]


async def time_per_request(
    app: FastAPI, headers: list[tuple[bytes, bytes]], requests: int, expect: int
) -> float:
    started = time.perf_counter()
    for _ in range(requests):
        status, _h, _b = await call(app, LIST, headers)
        assert status == expect, status
    return (time.perf_counter() - started) / requests


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--small-database-url", default=None)
    parser.add_argument("--large-database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small_dir, large_dir = Path(tmp, "small"), Path(tmp, "large")
        await asyncio.to_thread(small_dir.mkdir)
        await asyncio.to_thread(large_dir.mkdir)
        async with (
            running_app(small_dir, args.small_database_url) as small,
            running_app(large_dir, args.large_database_url) as large,
        ):
            small_services, large_services = services_of_app(small), services_of_app(large)
            print("filling: 10 tasks and 10,000 tasks …", flush=True)
            await fill(small_services, 10)
            await fill(large_services, 10_000)
            small_auth, large_auth = token_for(small_services), token_for(large_services)
            _s, small_headers, _b = await call(small, LIST, small_auth)
            _s, large_headers, large_body = await call(large, LIST, large_auth)
            small_cond = [*small_auth, (b"if-none-match", small_headers[b"etag"])]
            large_cond = [*large_auth, (b"if-none-match", large_headers[b"etag"])]

            ratios, small_times, large_times = [], [], []
            for _ in range(args.rounds):  # interleaved, so drift hits both sides alike
                s = await time_per_request(small, small_cond, args.requests, 304)
                big = await time_per_request(large, large_cond, args.requests, 304)
                small_times.append(s)
                large_times.append(big)
                ratios.append(big / s)
            print(
                f"304 on 10-task list:      {statistics.median(small_times) * 1e6:8.1f} µs/request"
            )
            print(
                f"304 on 10,000-task list:  {statistics.median(large_times) * 1e6:8.1f} µs/request"
            )
            print(f"ratio 10,000 / 10:        {statistics.median(ratios):8.3f}x  (goal ≤ 1.2x)")

            warm = await time_per_request(large, large_auth, 50, 200)
            print(
                f"full 200, 10,000 tasks, cached body:   {warm * 1e3:8.2f} ms/request = "
                f"{10_000 / warm:,.0f} items/s ({len(large_body):,} bytes)"
            )
            cold_times = []
            for _ in range(10):
                large_services.list_cache = ListCache()
                cold_times.append(await time_per_request(large, large_auth, 1, 200))
            cold = statistics.median(cold_times)
            print(
                f"full 200, 10,000 tasks, built afresh:  {cold * 1e3:8.2f} ms/request = "
                f"{10_000 / cold:,.0f} items/s"
            )


def services_of_app(app: FastAPI) -> Services:
    services: Services = app.state.services
    return services


if __name__ == "__main__":
    asyncio.run(main())
