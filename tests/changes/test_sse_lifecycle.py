"""Server-Sent Events across reconnects and shutdowns: where a stream continues, how it ends."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from orchestrator.db.changelog import latest_revision
from tests.changes.support import Stack, first_events, mint_token, server_env
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.e2e


async def test_subscribed_carries_the_revision_the_stream_continues_from(stack: Stack) -> None:
    token = await stack.user(f"u{uuid.uuid4().hex[:10]}")
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{stack.server.url}/api/v1/changes?collections=tasks"
    await stack.write_task("before")
    current = await latest_revision(stack.db)
    async with httpx.AsyncClient(timeout=10) as client:
        # The server hears of our write by its poll of the file: until then it is not current.
        async with asyncio.timeout(10):
            [subscribed] = await first_events(client, url, headers, 1)
            while int(subscribed["id"]) < current:
                [subscribed] = await first_events(client, url, headers, 1)
        assert subscribed["event"] == "subscribed"
        assert int(subscribed["id"]) == current
        assert orjson.loads(subscribed["data"])["revision"] == current
        # What a browser does when it reconnects before the first change: it sends that id,
        # and gets what happened while it was away.
        missed = [await stack.write_task(f"while away {n}") for n in range(2)]
        resumed = await first_events(client, url, {**headers, "Last-Event-ID": subscribed["id"]}, 3)
        assert resumed[0]["event"] == "subscribed"
        assert int(resumed[0]["id"]) == current
        assert [int(event["id"]) for event in resumed[1:]] == missed


async def test_sigterm_ends_open_streams_at_once_and_cleanly(tmp_path: Path) -> None:
    server = await asyncio.to_thread(
        ServerProcess(
            env=server_env(tmp_path / "data", ORCH_LOG_LEVEL="INFO"),
            log_path=tmp_path / "server.log",
        ).start
    )
    try:
        token = mint_token("admin")
        url = f"{server.url}/api/v1/changes"
        async with (
            httpx.AsyncClient(timeout=10) as client,
            client.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as stream,
        ):
            assert stream.status_code == 200
            lines = stream.aiter_lines()
            while not (await anext(lines)).startswith("event: subscribed"):
                pass
            assert server.process is not None
            stopped = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            # The stream ends as a complete response: no broken-stream error here.
            async with asyncio.timeout(5):
                async for _ in lines:
                    pass
            ended = time.monotonic() - stopped
        code = await asyncio.to_thread(server.process.wait, 10)
        exited = time.monotonic() - stopped
    finally:
        server.kill()
    assert ended < 3, f"the stream took {ended:.1f} s to end"
    assert exited < 5, f"the server took {exited:.1f} s to stop"
    assert code in (0, -signal.SIGTERM)
    logs = server.logs()
    assert '"level":"error"' not in logs
    assert "Traceback" not in logs
