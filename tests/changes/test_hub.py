"""The hub in-process: the hand-off from the log to the live feed, and its metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import uvicorn
from fastapi import FastAPI

from orchestrator.background import cancel_and_wait
from orchestrator.changes.hub import ByteBudget, Outbox, Session, Subscriber, watch_session
from orchestrator.config import Settings
from orchestrator.db import open_database
from orchestrator.db.changelog import latest_revision
from orchestrator.errors import Unauthorized
from orchestrator.services import Services
from tests.changes.support import connected, mint_token, until, write_task, ws_connect
from tests.support.servers import ServerProcess, free_port
from tests.support.settings import make_settings
from tests.support.users import make_user


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url,
        tmp_path / "data",
        secret_key="realtime-test-secret-" + "k" * 40,
    )


async def test_replay_hands_off_to_live_without_gap_or_duplicate(services: Services) -> None:
    """Writes land while a slow subscriber replays; a tiny queue forces every overflow path."""
    feed = services.hub.feed

    async def write_delivered(title: str) -> int:
        # As in a server, where the feed delivers each commit before the next request's.
        revision = await write_task(services.db, title)
        assert await feed.wait_past(revision, within=10)
        return revision

    start = await latest_revision(services.db)
    before = [await write_delivered(f"before {n}") for n in range(30)]
    outbox = Outbox(limit=4)
    subscriber = Subscriber(services.hub, outbox)
    # The subscriber fills its queue and waits for the client; the live buffer overflows.
    subscribing = asyncio.create_task(subscriber.subscribe(["tasks"], start))
    during = [await write_delivered(f"during {n}") for n in range(60)]
    received: list[int] = []
    async with asyncio.timeout(30):
        while len(received) < 90:
            for text in await outbox.take():
                body = orjson.loads(text)
                if body["type"] == "change":
                    received.append(body["revision"])
        await subscribing
    assert received == before + during
    # Live now: each new change arrives once.
    for n in range(5):
        revision = await write_delivered(f"live {n}")
        async with asyncio.timeout(10):
            frames = await outbox.take()
        assert [orjson.loads(text)["revision"] for text in frames] == [revision]
    subscriber.close()
    assert not outbox.overflowed.is_set()


async def test_a_revoked_connection_ends_after_its_client_is_sent_what_revoked_it(
    services: Services, database_url: str
) -> None:
    """The recheck that ends a connection can read a change (a demotion, say) committed by
    another process before this process's feed has delivered it: the connection still ends
    only after its client has been sent that change."""
    outbox = Outbox(limit=100)
    subscriber = Subscriber(services.hub, outbox)
    await subscriber.subscribe(["tasks"], await latest_revision(services.db))
    other_process = open_database(database_url, timeout=10)
    try:
        # Committed where this process hears of it only by its poll (SQLite) or a NOTIFY.
        revision = await write_task(other_process, "the change that revoked it")
    finally:
        await other_process.close()
    sent: list[int] = []

    async def writer() -> None:  # the connection's, as `ws.py` and `sse.py` run it
        while True:
            for text in await outbox.take():
                for _ in range(100):  # a slow send: a socket's waits for room, many turns
                    await asyncio.sleep(0)
                frame = orjson.loads(text)
                if frame["type"] == "change":
                    sent.append(frame["revision"])

    async def revoked() -> None:
        raise Unauthorized("Session revoked")

    session = Session(username="someone", revalidate=asyncio.Event(), budget=ByteBudget(10**9))
    session.revalidate.set()  # the users changed: recheck
    writing = asyncio.create_task(writer())
    try:
        end = await watch_session(
            session,
            feed=services.hub.feed,
            outbox=outbox,
            expires_at=time.time() + 60,
            recheck=revoked,
        )
    finally:
        await cancel_and_wait(writing)
        subscriber.close()
    assert end.reason == "revoked"
    assert sent == [revision]


@pytest.fixture
async def served(app: FastAPI) -> AsyncIterator[ServerProcess]:
    """The app (its lifespan already running) served by uvicorn in this process."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_config=None, ws_max_size=65536
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started)
    try:
        yield ServerProcess(env={}, log_path=Path("unused"), port=port)
    finally:
        server.should_exit = True
        await task


async def test_websocket_gauge_counts_open_connections(
    served: ServerProcess, services: Services
) -> None:
    await make_user(services.db, "gauge")
    gauge = services.metrics.websockets
    async with ws_connect(served, mint_token("gauge")) as ws:
        await connected(ws)
        assert gauge._value.get() == 1
    await until(lambda: gauge._value.get() == 0)
    assert services.metrics.registry.get_sample_value("orch_change_feed_lag_revisions") == 0
