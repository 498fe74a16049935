"""Helpers for the real-time tests: servers, tokens, real changes and WebSocket clients."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from orchestrator.auth.users import Role
from orchestrator.db import Database, open_database
from orchestrator.db.changelog import record_change
from orchestrator.representation import canonical_json
from tests.support.servers import ServerProcess
from tests.support.users import make_user

SECRET = "realtime-test-secret-" + "k" * 40
ADMIN_PASSWORD = "realtime-admin-password"


def server_env(data_dir: Path, database_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {
        "ORCH_ENVIRONMENT": "test",
        "ORCH_DATA_DIR": str(data_dir),
        "ORCH_SECRET_KEY": SECRET,
        "ORCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "ORCH_CHANGE_POLL_SECONDS": "0.2",
        "ORCH_LOG_LEVEL": "WARNING",
    }
    if database_url is not None:
        env["ORCH_DATABASE_URL"] = database_url
    env.update(extra)
    return env


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'orchestrator.db').resolve()}"


def mint_token(username: str, *, lifetime: float = 600.0, **claims: Any) -> str:
    """A token signed with the servers' secret, with any lifetime (even negative)."""
    now = time.time()
    payload = {
        "sub": username,
        "iss": "orchestrator",
        "aud": "orchestrator-api",
        "iat": round(now, 6),
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
        **claims,
    }
    return jwt.encode(payload, SECRET, algorithm="HS256")


@dataclass
class Stack:
    """Server processes on one database, and a connection of our own to that database."""

    database_url: str
    servers: list[ServerProcess]
    db: Database
    users: set[str] = field(default_factory=set)

    @property
    def server(self) -> ServerProcess:
        return self.servers[0]

    async def user(self, username: str, role: Role = "member") -> str:
        """A token for `username` (created on first use)."""
        if username not in self.users:
            await make_user(self.db, username, role, password=None)
            self.users.add(username)
        return mint_token(username)

    async def post_task(
        self, client: httpx.AsyncClient, token: str, title: str, *, server: int = 0
    ) -> dict[str, Any]:
        """Create a task through the HTTP API of one of the servers; returns its body."""
        response = await client.post(
            f"{self.servers[server].url}/api/v1/collab/tasks",
            json={"title": title},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def write_task(self, title: str) -> int:
        """Commit a real task change (as a write route would); returns its revision."""
        return await write_task(self.db, title)


async def write_task(db: Database, title: str) -> int:
    """Commit a real task change (as a write route would); returns its revision."""
    body = {"id": str(uuid.uuid4()), "title": title}
    async with db.transaction() as tx:
        return await record_change(
            tx,
            collection="tasks",
            op="create",
            resource_id=body["id"],
            data=canonical_json(body),
        )


@asynccontextmanager
async def stack(
    tmp_path: Path, *, database_url: str | None = None, processes: int = 1, **env: str
) -> AsyncIterator[Stack]:
    servers: list[ServerProcess] = []
    url = database_url or sqlite_url(tmp_path / "data")
    try:
        for index in range(processes):
            servers.append(
                await asyncio.to_thread(
                    ServerProcess(
                        env=server_env(tmp_path / "data", database_url, **env),
                        log_path=tmp_path / f"server{index}.log",
                    ).start
                )
            )
        db = open_database(url, timeout=5)
        try:
            yield Stack(database_url=url, servers=servers, db=db)
        finally:
            await db.close()
    finally:
        for server in servers:
            await asyncio.to_thread(server.stop)


def ws_connect(
    server: ServerProcess,
    token: str | None = None,
    *,
    header: bool = False,
    compression: str | None = None,
    **kwargs: Any,
) -> connect:
    url = f"{server.ws_url}/ws"
    headers = {}
    if token is not None and header:
        headers["Authorization"] = f"Bearer {token}"
    elif token is not None:
        url += f"?token={token}"
    return connect(
        url,
        additional_headers=headers,
        proxy=None,
        compression=compression,
        open_timeout=10,
        **kwargs,
    )


async def until(check: Callable[[], Awaitable[bool] | bool], within: float = 10.0) -> None:
    """Poll `check` until it holds; fails after `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(0.02)


def drop(ws: ClientConnection) -> None:
    """Lose the connection abruptly, as a network failure would (no closing handshake)."""
    ws.transport.abort()


async def recv_json(ws: ClientConnection, within: float = 10.0) -> dict[str, Any]:
    text = await asyncio.wait_for(ws.recv(), within)
    body = orjson.loads(text)
    assert isinstance(body, dict)
    return body


async def send_json(ws: ClientConnection, body: object) -> None:
    await ws.send(orjson.dumps(body).decode())


async def close_code(ws: ClientConnection, within: float = 10.0) -> tuple[int | None, list[Any]]:
    """Wait for the server to close; returns the close code and any frames that came first."""
    frames: list[Any] = []
    try:
        async with asyncio.timeout(within):
            while True:
                frames.append(orjson.loads(await ws.recv()))
    except ConnectionClosed as exc:
        return (exc.rcvd.code if exc.rcvd is not None else None), frames


async def connected(ws: ClientConnection) -> dict[str, Any]:
    first = await recv_json(ws)
    assert first["type"] == "connection", first
    return first


async def subscribe(
    ws: ClientConnection, collections: list[str] | None = None, since: int | None = None
) -> dict[str, Any]:
    command: dict[str, Any] = {"type": "subscribe", "collections": collections or ["tasks"]}
    if since is not None:
        command["since"] = since
    await send_json(ws, command)
    return await recv_json(ws)


async def collect_changes(
    ws: ClientConnection, *, until_revision: int, within: float = 20.0
) -> list[dict[str, Any]]:
    """Change frames until one at or past `until_revision`."""
    changes: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while True:
            body = await recv_json(ws, within)
            assert body["type"] == "change", body
            changes.append(body)
            if body["revision"] >= until_revision:
                return changes


async def first_events(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], count: int
) -> list[dict[str, str]]:
    """The stream's first `count` events with data (each as its fields), then disconnect."""
    events: list[dict[str, str]] = []
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        current: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line:
                if not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    current[name] = value
                continue
            if "data" in current:
                events.append(current)
                if len(events) == count:
                    return events
            current = {}
    raise AssertionError(f"the stream ended after {events}")
