"""The change feed end to end: resume, slow clients, SSE, two processes on PostgreSQL."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from orchestrator.db.changelog import latest_revision
from tests.changes.support import (
    Stack,
    close_code,
    collect_changes,
    connected,
    drop,
    recv_json,
    subscribe,
    ws_connect,
)

pytestmark = pytest.mark.e2e


def username() -> str:
    return f"u{uuid.uuid4().hex[:10]}"


async def test_resume_with_since_after_a_disconnect_has_no_gap_and_no_duplicate(
    stack: Stack,
) -> None:
    token = await stack.user(username())
    start = await latest_revision(stack.db)
    written: list[int] = []

    async def write(count: int) -> None:
        for n in range(count):
            written.append(await stack.write_task(f"stream {n}"))

    writer = asyncio.create_task(write(150))
    received: list[dict[str, Any]] = []
    async with ws_connect(stack.server, token) as ws:
        await connected(ws)
        assert (await subscribe(ws, ["tasks"], since=start))["type"] == "subscribed"
        while len(received) < 40:
            received.append(await recv_json(ws))
        drop(ws)
    # Gone mid-stream while the writes go on; come back from the last revision seen.
    async with ws_connect(stack.server, token) as ws:
        await connected(ws)
        ack = await subscribe(ws, ["tasks"], since=received[-1]["revision"])
        assert ack["type"] == "subscribed"
        await writer
        received += await collect_changes(ws, until_revision=written[-1])
    revisions = [change["revision"] for change in received]
    assert revisions == written
    assert [c["data"]["title"] for c in received] == [f"stream {n}" for n in range(150)]


async def test_own_and_another_process_writes_interleaved_arrive_once_in_order(
    stack: Stack,
) -> None:
    """The server hands its own commits on without reading the log, and reads the log for
    those of another process on the same file: interleaved, each arrives once, in order."""
    token = await stack.user(username())
    start = await latest_revision(stack.db)
    own: list[str] = []
    other: list[int] = []

    async def write_own(client: httpx.AsyncClient, worker: int) -> None:
        for n in range(40):
            own.append((await stack.post_task(client, token, f"own {worker} {n}"))["id"])

    async def write_other() -> None:
        for n in range(60):
            other.append(await stack.write_task(f"other {n}"))

    async with ws_connect(stack.server, token) as ws:
        await connected(ws)
        # From `start`: without it the subscription starts where the server's feed is, which
        # may be behind the other process's last writes of the test before.
        assert (await subscribe(ws, ["tasks"], since=start))["type"] == "subscribed"
        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(write_own(client, 0), write_own(client, 1), write_other())
        last = await latest_revision(stack.db)
        received = await collect_changes(ws, until_revision=last, within=30)
    revisions = [change["revision"] for change in received]
    assert revisions == list(range(start + 1, last + 1))
    assert len(received) == len(own) + len(other)
    assert set(own) <= {change["id"] for change in received}
    assert set(other) <= set(revisions)


async def test_stalled_client_does_not_slow_another_and_is_closed(stack: Stack) -> None:
    token = await stack.user(username())
    # A client that never reads, with a tiny receive buffer so the server notices soon.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", stack.server.port))
    stalled = await connect(
        f"{stack.server.ws_url}/ws?token={token}",
        sock=sock,
        proxy=None,
        compression=None,
        max_queue=1,
        ping_interval=None,
    )
    try:
        await connected(stalled)
        assert (await subscribe(stalled, ["tasks"]))["type"] == "subscribed"
        async with ws_connect(stack.server, token) as fast:
            await connected(fast)
            assert (await subscribe(fast, ["tasks"]))["type"] == "subscribed"
            padding = "p" * 20_000
            received: list[dict[str, Any]] = []
            progress = asyncio.Condition()

            async def read_fast() -> None:
                while len(received) < 600:
                    received.append(await recv_json(fast, within=30))
                    async with progress:
                        progress.notify_all()

            reading = asyncio.create_task(read_fast())
            written: list[int] = []
            for n in range(600):
                written.append(await stack.write_task(f"{n} {padding}"))
                # The reading client keeps up: never more than a few frames behind the writes
                # (this process writes faster than it reads 20 KB frames), far less than the
                # server's send queue (256 frames here), which the stalled client overflows.
                async with progress, asyncio.timeout(30):
                    await progress.wait_for(lambda: len(received) >= len(written) - 32)
            async with asyncio.timeout(30):
                await reading
            assert [c["revision"] for c in received] == written
        # The stalled client, reading at last, finds a prefix of the stream and then 1013.
        code, frames = await close_code(stalled, within=10)
        assert code == 1013
        got = [f["revision"] for f in frames if f["type"] == "change"]
        assert got == written[: len(got)]
        assert len(got) < len(written)
    finally:
        await stalled.close()


async def _sse_events(response: httpx.Response, count: int) -> list[dict[str, str]]:
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if "data" in current:
                events.append(current)
                if len(events) == count:
                    return events
            current = {}
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        current[key] = value.removeprefix(" ")
    return events


async def test_sse_streams_changes_and_resumes_with_last_event_id(stack: Stack) -> None:
    import orjson

    token = await stack.user(username())
    headers = {"Authorization": f"Bearer {token}"}
    start = await latest_revision(stack.db)
    first = [await stack.write_task(f"sse {n}") for n in range(3)]
    url = f"{stack.server.url}/api/v1/changes"
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream(
            "GET", url, params={"collections": "tasks", "since": start}, headers=headers
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = await _sse_events(response, 4)
        assert events[0]["event"] == "subscribed"
        assert [int(e["id"]) for e in events[1:]] == first
        assert [orjson.loads(e["data"])["data"]["title"] for e in events[1:]] == [
            f"sse {n}" for n in range(3)
        ]
        more = [await stack.write_task(f"later {n}") for n in range(2)]
        async with client.stream(
            "GET", url, headers={**headers, "Last-Event-ID": events[-1]["id"]}
        ) as response:
            resumed = await _sse_events(response, 3)
        assert [int(e["id"]) for e in resumed[1:]] == more

        assert (await client.get(url)).status_code == 401
        bad = await client.get(url, params={"collections": "nonsense"}, headers=headers)
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == 422
