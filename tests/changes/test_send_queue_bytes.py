"""Send queues are bounded in bytes: clients that never read cannot grow the server."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.changes.support import mint_token, server_env, ws_connect
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.e2e

CONNECTIONS = 20  # one user's cap
MESSAGE = orjson.dumps({"type": "chat", "text": "x" * 60_000}).decode()  # under the 64 KiB cap
# What each client sends: its queue's bound (4 MiB) past what the kernel's buffers take (the
# server's send buffer grows to 4 MiB; the client's receive buffer is held at 64 KiB).
PER_CONNECTION = 16 * 1024 * 1024
# The bound this test states: the user's queues (16 MiB) and every buffer around them.
RSS_GROWTH_BOUND_MIB = 48


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(field)


async def non_reading_client(server: ServerProcess, token: str) -> ClientConnection:
    """A connection whose client stops reading almost at once (a small buffer and queue)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    return await ws_connect(server, token, sock=sock, max_queue=1).__aenter__()


async def flood(ws: ClientConnection) -> int | None:
    """Send echoes and never read them; then read to the close. The close code, if any."""
    try:
        for _ in range(PER_CONNECTION // len(MESSAGE)):
            await ws.send(MESSAGE)
        async with asyncio.timeout(60):
            while True:
                await ws.recv()
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else None


async def test_twenty_non_reading_connections_of_one_user_stay_bounded(tmp_path: Path) -> None:
    server = ServerProcess(
        env=server_env(
            tmp_path / "data",
            ORCH_WS_MAX_MESSAGES_PER_SECOND="10000",
            ORCH_WS_SEND_QUEUE_BYTES=str(4 * 1024 * 1024),
            ORCH_WS_SEND_QUEUE_USER_BYTES=str(16 * 1024 * 1024),
        ),
        log_path=tmp_path / "server.log",
    )
    await asyncio.to_thread(server.start, 120)
    try:
        assert server.process is not None
        pid = server.process.pid
        before = rss_kib(pid, "VmRSS")
        # The peak (VmHWM) starts from here.
        await asyncio.to_thread(Path(f"/proc/{pid}/clear_refs").write_text, "5")
        token = mint_token("admin")
        clients = [await non_reading_client(server, token) for _ in range(CONNECTIONS)]
        codes = await asyncio.gather(*(flood(ws) for ws in clients))
        peak = rss_kib(pid, "VmHWM")
        for ws in clients:
            await ws.close()
    finally:
        await asyncio.to_thread(server.stop)
    growth_mib = (peak - before) / 1024
    assert growth_mib < RSS_GROWTH_BOUND_MIB, f"the server grew by {growth_mib:.0f} MiB"
    assert codes == [1013] * CONNECTIONS, codes
