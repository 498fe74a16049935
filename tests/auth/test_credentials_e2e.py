"""Credentials against real server processes: revocation across processes sharing PostgreSQL,
the WebSocket Origin rule for cookie sessions, and the SSE feed followed with a cookie."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from tests.changes.support import ADMIN_PASSWORD, close_code, connected, stack
from tests.support.databases import migrated_postgres_database
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with migrated_postgres_database() as url:
        yield url


async def sign_in(client: httpx.AsyncClient, server: ServerProcess) -> dict[str, Any]:
    response = await client.post(
        f"{server.url}/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def browser_cookie(client: httpx.AsyncClient, server: ServerProcess) -> tuple[str, str]:
    response = await client.post(
        f"{server.url}/auth/session", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 204, response.text
    cookies = {
        h.split("=", 1)[0]: h.split(";", 1)[0].split("=", 1)[1]
        for h in response.headers.get_list("set-cookie")
    }
    return cookies["orch_session"], cookies["orch_csrf"]


async def refused_within(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], seconds: float
) -> float:
    """Poll `url` until it answers 401; how long that took (fails past `seconds`)."""
    started = time.monotonic()
    while True:
        response = await client.get(url, headers=headers)
        elapsed = time.monotonic() - started
        if response.status_code == 401:
            return elapsed
        assert response.status_code == 200, response.text
        assert elapsed < seconds, f"still accepted after {elapsed:.2f} s"
        await asyncio.sleep(0.02)


async def test_a_logout_through_one_process_is_refused_by_the_other_within_two_seconds(
    tmp_path: Path, postgres_url: str
) -> None:
    # The poll is slower than the 2 s promise: only NOTIFY can keep it.
    async with (
        stack(
            tmp_path, database_url=postgres_url, processes=2, ORCH_CHANGE_POLL_SECONDS="5"
        ) as servers,
        httpx.AsyncClient(timeout=10) as client,
    ):
        one, two = servers.servers
        body = await sign_in(client, one)
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        assert (await client.get(f"{two.url}/api/v1/users/me", headers=headers)).status_code == 200
        assert (await client.post(f"{one.url}/auth/logout", headers=headers)).status_code == 204
        await refused_within(client, f"{two.url}/api/v1/users/me", headers, 2.0)
        response = await client.post(
            f"{two.url}/auth/refresh", json={"refresh_token": body["refresh_token"]}
        )
        assert response.status_code == 401

        # a browser session ended through the first is refused by the second too
        session, csrf = await browser_cookie(client, one)
        cookie = {"Cookie": f"orch_session={session}; orch_csrf={csrf}"}
        assert (await client.get(f"{two.url}/api/v1/users/me", headers=cookie)).status_code == 200
        response = await client.post(
            f"{one.url}/auth/logout", headers={**cookie, "X-CSRF-Token": csrf}
        )
        assert response.status_code == 204
        await refused_within(client, f"{two.url}/api/v1/users/me", cookie, 2.0)


async def make_key(
    client: httpx.AsyncClient, server: ServerProcess, token: str, **body: Any
) -> dict[str, Any]:
    response = await client.post(
        f"{server.url}/api/v1/api-keys",
        json={"name": "worker", **body},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_a_key_revoked_through_one_process_is_refused_by_the_other_within_two_seconds(
    tmp_path: Path, postgres_url: str
) -> None:
    async with (
        stack(
            tmp_path, database_url=postgres_url, processes=2, ORCH_CHANGE_POLL_SECONDS="5"
        ) as servers,
        httpx.AsyncClient(timeout=10) as client,
    ):
        one, two = servers.servers
        token = (await sign_in(client, one))["access_token"]
        key = await make_key(client, one, token)
        headers = {"Authorization": f"Bearer {key['key']}"}
        # the second process has it cached now: only the change log can tell it
        for _ in range(3):
            assert (
                await client.get(f"{two.url}/api/v1/users/me", headers=headers)
            ).status_code == 200
        response = await client.delete(
            f"{one.url}/api/v1/api-keys/{key['id']}", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 204
        await refused_within(client, f"{two.url}/api/v1/users/me", headers, 2.0)
        assert (await client.get(f"{one.url}/api/v1/users/me", headers=headers)).status_code == 401


async def test_a_read_only_key_follows_the_feeds_but_writes_nothing(tmp_path: Path) -> None:
    async with stack(tmp_path) as servers, httpx.AsyncClient(timeout=10) as client:
        server = servers.server
        token = (await sign_in(client, server))["access_token"]
        key = (await make_key(client, server, token, read_only=True))["key"]
        headers = {"Authorization": f"Bearer {key}"}
        refused = await client.post(
            f"{server.url}/api/v1/collab/tasks", json={"title": "x"}, headers=headers
        )
        assert refused.status_code == 403
        feed = f"{server.url}/api/v1/changes?collections=tasks"
        async with client.stream("GET", feed, headers=headers) as stream:
            assert stream.status_code == 200
            lines = stream.aiter_lines()
            assert (await sse_events(lines, 1))[0]["event"] == "subscribed"
            async with connect(f"{server.ws_url}/ws", additional_headers=headers, proxy=None) as ws:
                assert (await connected(ws))["user"] == "admin"
                await ws.send(
                    orjson.dumps({"type": "subscribe", "collections": ["tasks"]}).decode()
                )
                assert orjson.loads(await ws.recv())["type"] == "subscribed"
                task = await servers.post_task(client, token, "seen")
                change = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                assert change["type"] == "change"
                assert change["id"] == task["id"]
            (event,) = await sse_events(lines, 1)
            assert event["data"]["id"] == task["id"]
        async with connect(f"{server.ws_url}/ws?token={key}", proxy=None) as ws:
            assert (await connected(ws))["user"] == "admin"


async def test_a_cookie_websocket_needs_our_origin_or_a_configured_one(tmp_path: Path) -> None:
    async with (
        stack(tmp_path, ORCH_CORS_ORIGINS="https://console.example") as servers,
        httpx.AsyncClient(timeout=10) as client,
    ):
        server = servers.server
        session, _csrf = await browser_cookie(client, server)
        cookie = {"Cookie": f"orch_session={session}"}
        url = f"{server.ws_url}/ws"
        for origin in (server.url, "https://console.example"):
            async with connect(url, origin=origin, additional_headers=cookie) as ws:  # type: ignore[arg-type]
                assert (await connected(ws))["user"] == "admin"
        refused: tuple[str | None, ...] = (
            "https://evil.example",
            f"http://evil.example:{server.port}",
            None,
        )
        for other in refused:
            async with connect(url, origin=other, additional_headers=cookie) as ws:  # type: ignore[arg-type]
                code, frames = await close_code(ws)
                assert code == 1008, other
                assert frames == []
        # a token is no ambient credential: any origin may use one it holds
        token = (await sign_in(client, server))["access_token"]
        async with connect(
            f"{url}?token={token}",
            origin="https://evil.example",  # type: ignore[arg-type]
        ) as ws:
            assert (await connected(ws))["user"] == "admin"


async def sse_events(lines: AsyncIterator[str], count: int) -> list[dict[str, Any]]:
    """The next `count` events of an SSE stream (comments and `retry` skipped)."""
    events: list[dict[str, Any]] = []
    event: dict[str, Any] = {}
    async with asyncio.timeout(15):
        async for line in lines:
            if not line:
                if event:
                    events.append(event)
                    event = {}
                    if len(events) == count:
                        return events
                continue
            field, _, text = line.partition(": ")
            if field in ("id", "event"):
                event[field] = text
            elif field == "data":
                event["data"] = orjson.loads(text)
    raise AssertionError(f"the stream ended after {events}")


async def test_the_change_feed_follows_a_browser_session_cookie_and_resumes(
    tmp_path: Path,
) -> None:
    async with stack(tmp_path) as servers, httpx.AsyncClient(timeout=10) as client:
        server = servers.server
        session, csrf = await browser_cookie(client, server)
        cookie = {"Cookie": f"orch_session={session}; orch_csrf={csrf}"}
        write = {**cookie, "X-CSRF-Token": csrf}
        feed = f"{server.url}/api/v1/changes?collections=tasks"
        async with client.stream("GET", feed, headers=cookie) as stream:
            assert stream.status_code == 200
            lines = stream.aiter_lines()
            (subscribed,) = await sse_events(lines, 1)
            assert subscribed["event"] == "subscribed"
            first = await client.post(
                f"{server.url}/api/v1/collab/tasks", json={"title": "one"}, headers=write
            )
            assert first.status_code == 201
            (change,) = await sse_events(lines, 1)
            assert change["data"]["id"] == first.json()["id"]
        second = await client.post(
            f"{server.url}/api/v1/collab/tasks", json={"title": "two"}, headers=write
        )
        assert second.status_code == 201
        # the browser's automatic reconnect: same cookie, Last-Event-ID of the last change seen
        resume = {**cookie, "Last-Event-ID": change["id"]}
        async with client.stream("GET", feed, headers=resume) as stream:
            events = await sse_events(stream.aiter_lines(), 2)
            assert events[0]["event"] == "subscribed"
            assert events[1]["data"]["id"] == second.json()["id"]
            assert int(events[1]["id"]) > int(change["id"])
