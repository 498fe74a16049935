"""What the rate limiter and the observability layers cost on a cheap authenticated read.

In-process: GETs of one task go straight into the ASGI app (whole middleware stack, routing,
JWT auth, one-row read on SQLite), once with rate limits on (memory counters, a quota too large
to refuse) and once with them off, interleaved so that drift hits both alike.

    .venv/bin/python bench/rate_limit_overhead.py [--requests 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from fastapi import FastAPI
from starlette.types import Message

from orchestrator.app import create_app
from orchestrator.config import Settings
from orchestrator.db.migrate import upgrade
from orchestrator.services import Services
from orchestrator.tasks.queries import create_task


@asynccontextmanager
async def running_app(directory: Path, *, limited: bool) -> AsyncIterator[FastAPI]:
    url = f"sqlite:///{directory / 'bench.db'}"
    await asyncio.to_thread(upgrade, url)
    settings = Settings(
        environment="test",
        data_dir=directory,
        database_url=url,
        secret_key="bench-secret-key-" + "x" * 32,
        admin_password="bench-admin-password",
        log_level="WARNING",
        rate_limit_enabled=limited,
        rate_limit_reads="100000000/minute",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


async def call(app: FastAPI, path: str, headers: list[tuple[bytes, bytes]]) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "app": app,
    }
    status = 0

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def prepare(app: FastAPI) -> tuple[str, list[tuple[bytes, bytes]]]:
    services: Services = app.state.services
    task = await create_task(services.db, title="t", description="d", created_by="admin")
    token = services.tokens.issue("admin")
    return f"/api/v1/collab/tasks/{task.id}", [(b"authorization", f"Bearer {token}".encode())]


async def per_request(app: FastAPI, path: str, headers: list[tuple[bytes, bytes]], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        status = await call(app, path, headers)
        assert status == 200, status
    return (time.perf_counter() - started) / n


async def main() -> None:
    # no per-request log output: the figures are about the request path, not the terminal
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        on_dir, off_dir = Path(tmp, "on"), Path(tmp, "off")
        await asyncio.to_thread(on_dir.mkdir)
        await asyncio.to_thread(off_dir.mkdir)
        async with (
            running_app(on_dir, limited=True) as on,
            running_app(off_dir, limited=False) as off,
        ):
            on_path, on_auth = await prepare(on)
            off_path, off_auth = await prepare(off)
            on_times, off_times = [], []
            for _ in range(args.rounds):
                on_times.append(await per_request(on, on_path, on_auth, args.requests))
                off_times.append(await per_request(off, off_path, off_auth, args.requests))
    on_t, off_t = statistics.median(on_times), statistics.median(off_times)
    print(f"GET one task, rate limits off: {1 / off_t:8.0f} req/s ({off_t * 1e6:.0f} us)")
    print(f"GET one task, rate limits on:  {1 / on_t:8.0f} req/s ({on_t * 1e6:.0f} us)")
    print(f"limits on / off throughput:    {off_t / on_t:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
