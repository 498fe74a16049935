"""WebSocket fan-out: write-to-receipt latency of one change to many subscribers.

Real server processes (`orchestrator serve`), real sockets. One writer creates tasks over HTTP,
one at a time; N subscribers (`/ws`, subscribed to `tasks`) time the arrival of each change.
Latency is measured from the moment the POST is sent, so it includes the write itself and is
an upper bound of commit-to-receipt (the write's own latency is printed alongside).

    python bench/ws_fanout.py                     # 1,000 subscribers, one process, SQLite
    python bench/ws_fanout.py --postgres          # and across two processes on PostgreSQL

The subscribers are minimal clients (handshake, then raw frames) on uvloop, as the server is,
so that the figures measure the server, not a client library or the stock event loop; they
still share the machine's two cores with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.databases import create_postgres_database, drop_postgres_database

from bench.servers import SERVE, Server

T = TypeVar("T")
ADMIN_PASSWORD = "bench-admin-password"
SECRET = "bench-secret-" + "b" * 40


def _masked_text(payload: bytes) -> bytes:
    """A client text frame (clients must mask)."""
    mask = os.urandom(4)
    header = bytearray([0x81])
    length = len(payload)
    if length < 126:
        header.append(0x80 | length)
    else:
        header.append(0x80 | 126)
        header += length.to_bytes(2, "big")
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes(header) + mask + body


class Subscriber(asyncio.Protocol):
    """Counts bytes and stamps the first arrival after each write."""

    def __init__(self, bench: Fanout) -> None:
        self.bench = bench
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.handshake = asyncio.get_running_loop().create_future()
        self.ready = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.ready:
            self.buffer += data
            if b"\r\n\r\n" in self.buffer and not self.handshake.done():
                self.handshake.set_result(bytes(self.buffer))
            return
        if b'"type":"change"' in data:  # not a keepalive ping
            self.bench.arrived(self)

    def send(self, body: object) -> None:
        assert self.transport is not None
        self.transport.write(_masked_text(orjson.dumps(body)))


class Fanout:
    def __init__(self) -> None:
        self.waiting: set[Subscriber] = set()
        self.started = 0.0
        self.samples: list[float] = []
        self.all_arrived = asyncio.Event()

    def arrived(self, subscriber: Subscriber) -> None:
        if subscriber in self.waiting:
            self.waiting.discard(subscriber)
            self.samples.append(time.perf_counter() - self.started)
            if not self.waiting:
                self.all_arrived.set()

    async def connect(self, port: int, token: str) -> Subscriber:
        loop = asyncio.get_running_loop()
        transport, sub = await loop.create_connection(lambda: Subscriber(self), "127.0.0.1", port)
        sub.transport = transport  # uvloop may call connection_made only after returning
        key = base64.b64encode(os.urandom(16)).decode()
        sub.transport.write(
            (
                f"GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        response = await asyncio.wait_for(sub.handshake, 30)
        assert response.startswith(b"HTTP/1.1 101"), response[:200]
        sub.send({"type": "subscribe", "collections": ["tasks"]})
        # The connection message and the ack: wait until both are in before timing anything.
        deadline = time.monotonic() + 30
        while sub.buffer.count(b'"type":"') < 2:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no ack: {bytes(sub.buffer)[-300:]!r}")
            await asyncio.sleep(0.01)
        sub.ready = True
        return sub


@dataclass(frozen=True)
class FanoutResult:
    subscribers: int
    changes: int
    received: int
    write_p50_ms: float
    p50_ms: float
    p99_ms: float
    max_ms: float


def _percentile(ordered: list[float], share: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


async def measure(
    *, writer_url: str, reader_port: int, token: str, subscribers: int, changes: int
) -> FanoutResult:
    """Connect `subscribers` to the reader, create `changes` tasks one at a time through the
    writer (after five warm-up ones), and time every receipt of each."""
    bench = Fanout()
    subs: list[Subscriber] = []
    try:
        for start in range(0, subscribers, 100):
            batch = range(start, min(start + 100, subscribers))
            subs += await asyncio.gather(*(bench.connect(reader_port, token) for _ in batch))
        headers = {"Authorization": f"Bearer {token}"}
        write_times: list[float] = []
        async with httpx.AsyncClient(base_url=writer_url, timeout=30, headers=headers) as client:
            for n in range(changes + 5):
                bench.all_arrived.clear()
                bench.waiting = set(subs)
                bench.started = time.perf_counter()
                response = await client.post("/api/v1/collab/tasks", json={"title": f"fan-out {n}"})
                assert response.status_code == 201, response.text
                write_times.append(time.perf_counter() - bench.started)
                await asyncio.wait_for(bench.all_arrived.wait(), 30)
                if n == 4:  # warm-up rounds
                    bench.samples.clear()
                    write_times.clear()
    finally:
        for sub in subs:
            if sub.transport is not None:
                sub.transport.abort()
    samples = sorted(bench.samples)
    return FanoutResult(
        subscribers=subscribers,
        changes=changes,
        received=len(samples),
        write_p50_ms=statistics.median(write_times) * 1000,
        p50_ms=_percentile(samples, 0.50) * 1000,
        p99_ms=_percentile(samples, 0.99) * 1000,
        max_ms=samples[-1] * 1000 if samples else float("nan"),
    )


def run_client(main: Coroutine[Any, Any, T]) -> T:
    """Run the subscribers' side on uvloop: on the stock loop, the client's own handling of
    1,000 sockets was a large part of the time it stamps as latency."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def measure_fanout(**options: Any) -> FanoutResult:
    """`measure(**options)`, on the client's event loop."""
    return run_client(measure(**options))


def _start(env: dict[str, str], log: Path) -> Server:
    server = Server(log.stem, SERVE, {"ORCH_RATE_LIMIT_ENABLED": "false", **env}, log, log.parent)
    return server.start(timeout=120)


async def run(subscribers: int, rounds: int, postgres: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        database_url = await create_postgres_database() if postgres else None
        env = {
            "ORCH_ENVIRONMENT": "test",
            "ORCH_DATA_DIR": str(root / "data"),
            "ORCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "ORCH_SECRET_KEY": SECRET,
            "ORCH_LOG_LEVEL": "WARNING",
            "ORCH_WS_MAX_CONNECTIONS_PER_USER": str(subscribers + 10),
            **{k: v for k, v in os.environ.items() if k == "ORCH_CHANGE_POLL_SECONDS"},
        }
        if database_url:
            env["ORCH_DATABASE_URL"] = database_url
        servers: list[Server] = []
        try:
            servers.append(await asyncio.to_thread(_start, env, root / "writer.log"))
            if postgres:
                servers.append(await asyncio.to_thread(_start, env, root / "reader.log"))
            writer, reader = servers[0], servers[-1]
            async with httpx.AsyncClient(base_url=writer.url, timeout=30) as client:
                login = await client.post(
                    "/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
                )
                token = login.json()["access_token"]
            result = await measure(
                writer_url=writer.url,
                reader_port=reader.port,
                token=token,
                subscribers=subscribers,
                changes=rounds,
            )
            where = "two processes, PostgreSQL" if postgres else "one process, SQLite"
            print(f"ws fan-out: {subscribers} subscribers, {rounds} writes ({where})")
            print(f"  write (POST /api/v1/collab/tasks) p50 {result.write_p50_ms:.1f} ms")
            print(
                f"  write-to-receipt p50 {result.p50_ms:.1f} ms  p99 {result.p99_ms:.1f} ms"
                f"  max {result.max_ms:.1f} ms  ({result.received} receipts)"
            )
        finally:
            for server in servers:
                await asyncio.to_thread(server.stop)
            if database_url:
                await drop_postgres_database(database_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--postgres", action="store_true", help="only the two-process run")
    parser.add_argument("--sqlite", action="store_true", help="only the one-process run")
    args = parser.parse_args()
    if not args.postgres:
        run_client(run(args.subscribers, args.rounds, postgres=False))
    if not args.sqlite:
        run_client(run(args.subscribers, args.rounds, postgres=True))


if __name__ == "__main__":
    main()
