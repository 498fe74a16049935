"""A real server bounds what a connection may hold: head size, and time for heads, bodies, idle."""

from __future__ import annotations

import base64
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.support.servers import ServerProcess

pytestmark = pytest.mark.e2e

HEAD_TIMEOUT = 0.5
BODY_TIMEOUT = 0.5
KEEP_ALIVE = 1
PING_INTERVAL = 0.3
PING_TIMEOUT = 0.3
# Time each wait may take beyond its limit on a loaded machine.
SLACK = 5.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("bounds")
    proc = ServerProcess(
        env={
            "ORCH_DATA_DIR": str(tmp / "data"),
            "ORCH_ADMIN_PASSWORD": "bounds-admin-password",
            "ORCH_HTTP_HEADER_TIMEOUT_SECONDS": str(HEAD_TIMEOUT),
            "ORCH_HTTP_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
            "ORCH_HTTP_KEEP_ALIVE_SECONDS": str(KEEP_ALIVE),
            "ORCH_WS_PING_INTERVAL_SECONDS": str(PING_INTERVAL),
            "ORCH_WS_PING_TIMEOUT_SECONDS": str(PING_TIMEOUT),
        },
        log_path=tmp / "server.log",
    ).start()
    yield proc
    proc.stop()
    assert '"level":"error"' not in proc.logs()


def connect(server: ServerProcess, timeout: float = SLACK) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.settimeout(timeout)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a socket timeout fails the test)."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def status_and_error(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"connection: close" in head.lower()
    return status, orjson.loads(body)["error"]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_head_over_64_kib_gets_431_in_the_envelope(server: ServerProcess) -> None:
    with connect(server) as sock:
        filler = b"a" * 70_000
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Filler: " + filler + b"\r\n\r\n")
        status, error = status_and_error(read_until_closed(sock))
    assert status == 431
    assert error["code"] == 431
    assert error["path"] == "/health"
    assert error["method"] == "GET"
    assert error["request_id"]
    # just under the limit is an ordinary request
    with connect(server) as sock:
        filler = b"a" * 60_000
        sock.sendall(
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Filler: "
            + filler
            + b"\r\n\r\n"
        )
        assert read_until_closed(sock).startswith(b"HTTP/1.1 200 ")


def test_unfinished_huge_headers_are_cut_off_with_bounded_memory(server: ServerProcess) -> None:
    assert server.process is not None
    before = rss_kib(server.process.pid)
    socks = [connect(server) for _ in range(4)]
    piece = b"b" * 65536
    sent = dict.fromkeys(range(len(socks)), 0)
    open_ = set(sent)
    for sock in socks:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Endless: ")
    # Four 16 MiB header values that never end, sent side by side.
    while open_ and min(sent[n] for n in open_) < 16 * 1024 * 1024:
        for n in list(open_):
            try:
                socks[n].sendall(piece)
                sent[n] += len(piece)
            except OSError:  # the server closed it
                open_.discard(n)
    growth_mib = (rss_kib(server.process.pid) - before) / 1024
    for sock in socks:
        answer = read_until_closed(sock)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ")
        sock.close()
    assert not open_, "the server kept reading an endless header"
    assert growth_mib < 16, f"the server grew by {growth_mib:.1f} MiB"


def test_a_head_that_does_not_arrive_in_time_gets_408(server: ServerProcess) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        status, error = status_and_error(read_until_closed(sock))
        waited = time.monotonic() - started
    assert status == 408
    assert error["code"] == 408
    assert HEAD_TIMEOUT * 0.9 <= waited < HEAD_TIMEOUT + SLACK


def test_a_body_that_does_not_arrive_in_time_is_dropped(server: ServerProcess) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        assert read_until_closed(sock) == b""
        assert time.monotonic() - started < BODY_TIMEOUT + SLACK


def test_idle_connections_are_closed(server: ServerProcess) -> None:
    with connect(server) as sock:  # never sends a byte
        started = time.monotonic()
        assert read_until_closed(sock) == b""
        assert KEEP_ALIVE * 0.9 <= time.monotonic() - started < KEEP_ALIVE + SLACK
    with connect(server) as sock:  # idle after an answer
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b'{"status":"healthy"}')


def test_a_websocket_peer_that_stops_answering_pings_is_closed(server: ServerProcess) -> None:
    token = login_token(server)
    key = base64.b64encode(os.urandom(16))
    with connect(server) as sock:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n\r\n"
        )
        started = time.monotonic()
        # Reads everything (the pings too) but answers nothing: a peer that went silent.
        received = read_until_closed(sock)
        waited = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 101 ")
    assert b"\x89" in received  # a ping frame (FIN + opcode 9) came before the close
    assert waited < PING_INTERVAL + PING_TIMEOUT + SLACK


def login_token(server: ServerProcess) -> str:
    body = orjson.dumps({"username": "admin", "password": "bounds-admin-password"})
    with connect(server) as sock:
        sock.sendall(
            b"POST /auth/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        answer = read_until_closed(sock)
    token: str = orjson.loads(answer.partition(b"\r\n\r\n")[2])["access_token"]
    return token
