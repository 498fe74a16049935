"""Soak: many WebSocket subscribers and a mix of HTTP reads and writes against a real server.

Starts `orchestrator serve` on a free loopback port (SQLite in a temp dir unless
--database-url), opens --subscribers change-feed subscriptions, runs writers and readers for
--duration seconds, then checks that every subscriber saw every change exactly once, in order.

    .venv/bin/python bench/soak.py [--subscribers 500] [--duration 60] [--database-url …]

Prints errors, missed and duplicated change events and the server's RSS growth; exits 1 unless
they are 0 / 0 / 0 and under 50 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.server import ServerProcess

ADMIN_PASSWORD = "soak-admin-password"
RSS_LIMIT_MB = 50.0
TASKS = "/api/v1/collab/tasks"
TASK_LIST = "/api/v1/collab/state/tasks"
JOBS = "/api/v1/jobs"


@dataclass
class Subscriber:
    revisions: list[int] = field(default_factory=list)
    ack_revision: int = 0
    errors: int = 0


@dataclass
class Tally:
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    acknowledged_writes: int = 0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def subscribe(
    *,
    url: str,
    token: str,
    sub: Subscriber,
    ready: asyncio.Event,
    stop: asyncio.Event,
    connected: list[int],
) -> None:
    try:
        async with websockets.connect(
            f"{url}/ws?token={token}", max_queue=None, open_timeout=60, ping_interval=None
        ) as ws:
            # A text frame: a binary one gets an "invalid_message" error and no subscription.
            await ws.send(
                orjson.dumps({"type": "subscribe", "collections": ["jobs", "tasks"]}).decode()
            )
            while True:
                message = orjson.loads(await ws.recv())
                if message.get("type") == "subscribed":
                    sub.ack_revision = int(message["revision"])
                    break
            connected.append(1)
            ready.set()
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                message = orjson.loads(raw)
                if message.get("type") == "change":
                    sub.revisions.append(int(message["revision"]))
    except Exception:
        sub.errors += 1
        ready.set()


async def writer(client: httpx.AsyncClient, tally: Tally, deadline: float, seed: int) -> None:
    rng = random.Random(seed)
    mine: list[tuple[str, str]] = []  # (task id, etag)
    while time.monotonic() < deadline:
        roll = rng.random()
        try:
            if roll < 0.4 or not mine:
                response = await client.post(TASKS, json={"title": f"soak {rng.random()}"})
                if response.status_code == 201:
                    mine.append((response.json()["id"], response.headers["etag"]))
            elif roll < 0.6:
                response = await client.post(JOBS, json={"title": f"soak job {seed}"})
            elif roll < 0.85:
                task_id, etag = mine.pop(rng.randrange(len(mine)))
                response = await client.patch(
                    f"{TASKS}/{task_id}", json={"title": "edited"}, headers={"If-Match": etag}
                )
                if response.status_code == 200:
                    mine.append((task_id, response.headers["etag"]))
            else:
                task_id, etag = mine.pop(rng.randrange(len(mine)))
                response = await client.delete(f"{TASKS}/{task_id}", headers={"If-Match": etag})
        except httpx.HTTPError as exc:
            tally.errors.append(f"write: {type(exc).__name__}")
            continue
        tally.requests += 1
        if response.status_code >= 400:
            tally.errors.append(f"write {response.request.method}: {response.status_code}")
        else:
            tally.acknowledged_writes += 1


async def reader(client: httpx.AsyncClient, tally: Tally, deadline: float) -> None:
    etag = ""
    while time.monotonic() < deadline:
        try:
            response = await client.get(TASK_LIST, headers={"If-None-Match": etag})
            tally.requests += 1
            if response.status_code == 200:
                etag = response.headers.get("etag", "")
            elif response.status_code != 304:
                tally.errors.append(f"read: {response.status_code}")
            response = await client.get(f"{JOBS}?limit=20")
            tally.requests += 1
            if response.status_code != 200:
                tally.errors.append(f"read jobs: {response.status_code}")
        except httpx.HTTPError as exc:
            tally.errors.append(f"read: {type(exc).__name__}")


async def soak(url: str, pid: int, *, subscribers: int, duration: float) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as anon:
        login = await anon.post(
            "/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        token = login.json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=20)
    ws_url = url.replace("http://", "ws://")
    subs = [Subscriber() for _ in range(subscribers)]
    stop = asyncio.Event()
    connected: list[int] = []
    readies = [asyncio.Event() for _ in subs]
    listeners = [
        asyncio.create_task(
            subscribe(url=ws_url, token=token, sub=sub, ready=ready, stop=stop, connected=connected)
        )
        for sub, ready in zip(subs, readies, strict=True)
    ]
    for ready in readies:
        await ready.wait()
    rss_before = rss_mb(pid)
    tally = Tally()
    started = time.monotonic()
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=30, limits=limits
    ) as client:
        deadline = started + duration
        await asyncio.gather(
            *(writer(client, tally, deadline, seed) for seed in range(8)),
            *(reader(client, tally, deadline) for _ in range(4)),
        )
        final = (await client.get("/api/v1/collab/state/tasks")).status_code
        if final != 200:
            tally.errors.append(f"final read: {final}")
        # Every change up to now must reach every subscriber; wait for the stragglers.
        async with websockets.connect(f"{ws_url}/ws?token={token}") as probe:
            await probe.send(orjson.dumps({"type": "ping"}).decode())
            while True:
                message = orjson.loads(await probe.recv())
                if message.get("type") == "pong":
                    last = int(message["revision"])
                    break
    settle_deadline = time.monotonic() + 20
    while time.monotonic() < settle_deadline and any(  # noqa: ASYNC110
        (s.revisions[-1] if s.revisions else s.ack_revision) < last for s in subs if not s.errors
    ):
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - started
    stop.set()
    await asyncio.gather(*listeners)
    rss_after = rss_mb(pid)

    missed = duplicated = 0
    for sub in subs:
        seen = set(sub.revisions)
        duplicated += len(sub.revisions) - len(seen)
        expected = set(range(sub.ack_revision + 1, last + 1))
        missed += len(expected - seen)
    return {
        "subscribers": float(len(connected)),
        "subscriber_errors": float(sum(s.errors for s in subs)),
        "http_requests": float(tally.requests),
        "http_errors": float(len(tally.errors)),
        "writes_acknowledged": float(tally.acknowledged_writes),
        "change_frames": float(sum(len(s.revisions) for s in subs)),
        "missed": float(missed),
        "duplicated": float(duplicated),
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_after,
        "rss_growth_mb": rss_after - rss_before,
        "seconds": elapsed,
        "requests_per_second": tally.requests / elapsed if elapsed else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of writes (<= 75)")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    duration = min(args.duration, 75.0)  # the whole run stays within 90 s
    with tempfile.TemporaryDirectory(prefix="orch-soak-") as tmp:
        env = {
            "ORCH_ENVIRONMENT": "test",
            "ORCH_DATA_DIR": str(Path(tmp) / "data"),
            "ORCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "ORCH_SECRET_KEY": "soak-secret-key-" + "x" * 32,
            "ORCH_LOG_LEVEL": "WARNING",
            "ORCH_CHANGE_POLL_SECONDS": "0.2",
            "ORCH_WS_MAX_CONNECTIONS_PER_USER": str(args.subscribers + 10),
            "ORCH_WS_MAX_MESSAGES_PER_SECOND": "1000",
            "ORCH_RATE_LIMIT_ENABLED": "false",
        }
        if args.database_url:
            env["ORCH_DATABASE_URL"] = args.database_url
        server = ServerProcess(env=env, log_path=Path(tmp) / "server.log").start(timeout=120)
        try:
            assert server.process is not None
            figures = asyncio.run(
                soak(
                    server.url, server.process.pid, subscribers=args.subscribers, duration=duration
                )
            )
        finally:
            server.stop()
    for name, value in figures.items():
        print(f"{name:>22}: {value:,.1f}")
    errors = figures["http_errors"] + figures["subscriber_errors"]
    ok = (
        errors == 0
        and figures["missed"] == 0
        and figures["duplicated"] == 0
        and figures["subscribers"] == args.subscribers
        and figures["rss_growth_mb"] < RSS_LIMIT_MB
    )
    print(
        f"errors {errors:.0f}, missed {figures['missed']:.0f}, "
        f"duplicated {figures['duplicated']:.0f}, RSS growth {figures['rss_growth_mb']:.1f} MB: "
        + ("OK" if ok else "FAILED")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
