"""Logs say what happened at its true level, and never a secret: refusals are not errors."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.cli_runner import run_cli
from tests.support.servers import ServerProcess

ERROR_LINE = re.compile(r'"level": ?"(error|critical)"|Traceback')
ADMIN_PASSWORD = "quiet-admin-password"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        env={
            "ORCH_DATA_DIR": str(tmp_path / "data"),
            "ORCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "ORCH_RATE_LIMIT_ENABLED": "true",
            "ORCH_RATE_LIMIT_WS_CONNECT": "3/minute",
            "ORCH_WS_MAX_CONNECTIONS_PER_USER": "1",
        },
        log_path=tmp_path / "server.log",
    ).start()
    yield proc
    proc.stop()


def handshake_and_vanish(server: ServerProcess, path: str) -> None:
    """A WebSocket handshake whose client resets the connection at once (a flood's client)."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n".encode()
        )


async def refused_with(url: str) -> int:
    """The close code (or HTTP status) a WebSocket connection to `url` is refused with."""
    try:
        async with connect(url, open_timeout=10) as ws:
            await asyncio.wait_for(ws.recv(), 10)
            await asyncio.wait_for(ws.recv(), 10)
    except InvalidStatus as exc:
        return exc.response.status_code
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else 1006
    raise AssertionError("not refused")


async def test_refused_websocket_handshakes_are_not_errors(server: ServerProcess) -> None:
    ws = f"{server.ws_url}/ws"
    for _ in range(3):
        assert await refused_with(f"{ws}?token=not-a-token") == 1008
    assert await refused_with(f"{ws}?token=not-a-token") == 429
    for _ in range(20):
        await asyncio.to_thread(handshake_and_vanish, server, "/ws?token=not-a-token")
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{server.url}/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
    token = response.json()["access_token"]
    async with connect(f"{ws}?token={token}") as first:
        await first.recv()
        assert await refused_with(f"{ws}?token={token}") == 1008  # over the per-user cap
        assert await refused_with(f"{ws}?token={token}") == 1008
        assert await refused_with(f"{ws}?token={token}") == 429  # over the user's rate
    # The flood came first (from one client, on one event loop): it is all in the log now.
    assert server.logs().count('"event":"websocket_rejected"') >= 2
    errors = [line for line in server.logs().splitlines() if ERROR_LINE.search(line)]
    assert errors == []


SECRETS = ["short-secret-7f3a9", "Hunter2pass", "redis-pw-91c4e", "db-pw-5b2d8"]
SECRET_SETTINGS = {
    "ORCH_SECRET_KEY": SECRETS[0],
    "ORCH_ADMIN_PASSWORD": SECRETS[1],
    "ORCH_REDIS_URL": f"redis://:{SECRETS[2]}@127.0.0.1:6379/0",
    "ORCH_DATABASE_URL": f"postgresql://orch:{SECRETS[3]}@127.0.0.1:1/orch",
}


@pytest.mark.parametrize(
    ("wrong", "named"),
    [
        ({}, "ORCH_SECRET_KEY"),
        ({"ORCH_SECRET_KEY": "s3cr3t" * 8}, "ORCH_ADMIN_PASSWORD"),
        ({"ORCH_SECRET_KEY": "changeme"}, "ORCH_SECRET_KEY"),
        ({"ORCH_SECRET_KEY": "s3cr3t" * 8, "ORCH_ADMIN_PASSWORD": "long-enough-pw"}, "ORCH_PORT"),
    ],
)
def test_a_refused_production_start_names_the_setting_not_its_value(
    tmp_path: Path, wrong: dict[str, str], named: str
) -> None:
    env = {
        **SECRET_SETTINGS,
        "ORCH_ENVIRONMENT": "production",
        "ORCH_DATA_DIR": str(tmp_path / "data"),
        "ORCH_PORT": "not-a-port" if named == "ORCH_PORT" else "0",
        **wrong,
    }
    result = run_cli("serve", env=env, timeout=30)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert named in output
    # Not a secret, nor a piece of one (a truncated echo once showed most of a secret key).
    for secret in [*SECRETS, *wrong.values()]:
        pieces = {secret[i : i + 5] for i in range(len(secret) - 4)}
        assert not [piece for piece in pieces if piece in output], output
