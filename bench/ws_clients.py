"""WebSocket fan-out: N subscribers to `tasks`, one task created at a time, commit-to-receipt.

The subscribers are spread over a few child processes (`python -m bench.ws_clients ...`), each an
asyncio client on the `websockets` library, so one Python loop's parsing does not dominate the
figure. Every receipt is stamped with `time.monotonic()` (one system-wide clock on Linux) and
compared with the moment the parent sent the POST that made the change: an upper bound of the
commit-to-receipt time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.servers import REPO

_CONNECT_CONCURRENCY = 50


async def _subscriber(url: str, token: str) -> ClientConnection:
    ws = await connect(
        url + "/ws",
        additional_headers={"Authorization": f"Bearer {token}"},
        max_queue=None,
        open_timeout=30,
    )
    await ws.send(json.dumps({"type": "subscribe", "collections": ["tasks"]}))
    while True:
        ack = json.loads(await ws.recv())
        if ack.get("type") == "subscribed":
            return ws


async def _listen(ws: ClientConnection, expected: int, receipts: dict[str, list[float]]) -> None:
    seen = 0
    while seen < expected:
        raw = await ws.recv()
        at = time.monotonic()
        frame = json.loads(raw)
        if frame.get("type") == "change":
            receipts[frame["id"]].append(at)
            seen += 1


async def _client(url: str, token: str, count: int, changes: int, within: float) -> None:
    receipts: dict[str, list[float]] = defaultdict(list)
    limit = asyncio.Semaphore(_CONNECT_CONCURRENCY)

    async def open_one() -> ClientConnection:
        async with limit:
            return await _subscriber(url, token)

    sockets = await asyncio.gather(*(open_one() for _ in range(count)))
    print("READY", flush=True)
    try:
        await asyncio.wait_for(
            asyncio.gather(*(_listen(ws, changes, receipts) for ws in sockets)), within
        )
    except TimeoutError:
        pass  # report what arrived; the parent counts the missing receipts
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    print("RESULT " + json.dumps(receipts), flush=True)


@dataclass(frozen=True)
class FanoutResult:
    subscribers: int
    changes: int
    received: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run_fanout(
    *,
    base_url: str,
    ws_url: str,
    token: str,
    subscribers: int,
    changes: int,
    processes: int,
    gap_seconds: float,
    timeout: float = 60.0,
) -> FanoutResult:
    """Connect `subscribers`, create `changes` tasks one after another, time every receipt."""
    shares = [subscribers // processes + (i < subscribers % processes) for i in range(processes)]
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.ws_clients",
                "--url",
                ws_url,
                "--count",
                str(share),
                "--changes",
                str(changes),
                "--timeout",
                str(timeout),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for share in shares
        if share
    ]
    sent: dict[str, float] = {}
    try:
        for child in children:
            assert child.stdin is not None
            child.stdin.write(token + "\n")
            child.stdin.close()
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline()
            if line.strip() != "READY":
                assert child.stderr is not None
                errors = child.stderr.read()
                raise RuntimeError(f"a WebSocket client failed to subscribe: {line!r} {errors}")
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=10) as http:
            for i in range(changes):
                started = time.monotonic()
                response = http.post("/api/v1/collab/tasks", json={"title": f"fan-out {i}"})
                response.raise_for_status()
                sent[response.json()["id"]] = started
                time.sleep(gap_seconds)  # one change at a time: each fan-out is timed on its own
        latencies: list[float] = []
        for child in children:
            assert child.stdout is not None
            assert child.stderr is not None
            out = child.stdout.read()
            child.stderr.read()
            child.wait(timeout)
            for line in out.splitlines():
                if line.startswith("RESULT "):
                    for task_id, stamps in json.loads(line[7:]).items():
                        if task_id in sent:
                            latencies.extend((at - sent[task_id]) * 1000 for at in stamps)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return FanoutResult(
        subscribers=subscribers,
        changes=changes,
        received=len(latencies),
        p50_ms=_percentile(latencies, 0.50),
        p99_ms=_percentile(latencies, 0.99),
        max_ms=max(latencies, default=float("nan")),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="one WebSocket client process of the fan-out")
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--changes", type=int, required=True)
    parser.add_argument("--timeout", type=float, required=True)
    args = parser.parse_args()
    token = sys.stdin.readline().strip()  # not on the command line, where `ps` shows it
    asyncio.run(_client(args.url, token, args.count, args.changes, args.timeout))


if __name__ == "__main__":
    main()
