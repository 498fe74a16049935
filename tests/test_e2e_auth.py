"""A real server process, managed by the real CLI in other processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli_runner import run_cli
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.servers import ServerProcess, free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def database_env(backend: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """What the server and the CLI share: the data dir, and the PostgreSQL URL on PostgreSQL."""
    env = {"ORCH_DATA_DIR": str(tmp_path / "data"), "ORCH_CHANGE_POLL_SECONDS": "0.5"}
    if backend == "sqlite":
        yield env
        return
    import asyncio

    url = asyncio.run(create_postgres_database())
    try:
        yield {**env, "ORCH_DATABASE_URL": url}
    finally:
        asyncio.run(drop_postgres_database(url))


def login(base: str, username: str, password: str) -> dict[str, str]:
    response = httpx.post(f"{base}/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def wait_for_status(url: str, headers: dict[str, str], status: int, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while True:
        got = httpx.get(url, headers=headers).status_code
        if got == status:
            return
        assert time.monotonic() < deadline, f"still {got}, expected {status}"
        time.sleep(0.05)  # polling interval of the condition, not a wait for timing


def test_cli_password_change_and_disable_revoke_tokens_on_a_running_server(
    database_env: dict[str, str], tmp_path: Path
) -> None:
    created = run_cli("users", "create", "carol", env=database_env, password="carol-pass-1")
    assert created.returncode == 0, created.stderr
    server = ServerProcess(
        env={**database_env, "ORCH_ADMIN_PASSWORD": "e2e-admin-pass"},
        log_path=tmp_path / "server.log",
    ).start()
    try:
        me = f"{server.url}/api/v1/users/me"
        first = login(server.url, "carol", "carol-pass-1")
        assert httpx.get(me, headers=first).json()["username"] == "carol"

        assert (
            run_cli(
                "users", "passwd", "carol", env=database_env, password="carol-pass-2"
            ).returncode
            == 0
        )
        wait_for_status(me, first, 401)
        second = login(server.url, "carol", "carol-pass-2")
        assert httpx.get(me, headers=second).status_code == 200

        assert run_cli("users", "disable", "carol", env=database_env).returncode == 0
        wait_for_status(me, second, 401)
        refused = httpx.post(
            f"{server.url}/auth/login", json={"username": "carol", "password": "carol-pass-2"}
        )
        assert refused.status_code == 401
        assert "carol-pass" not in server.logs()
    finally:
        server.stop()


def test_first_start_prints_the_admin_password_once_and_tokens_survive_a_restart(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    env = {"ORCH_DATA_DIR": str(data)}
    first = ServerProcess(env=env, log_path=tmp_path / "first.log").start()
    try:
        password = (data / "admin_password").read_text().strip()
        assert (data / "admin_password").stat().st_mode & 0o777 == 0o600
        assert (data / "secret_key").stat().st_mode & 0o777 == 0o600
        assert first.logs().count(password) == 1  # printed once, on the terminal
        headers = login(first.url, "admin", password)
    finally:
        first.stop()
    second = ServerProcess(env=env, log_path=tmp_path / "second.log").start()
    try:
        assert "Created the first user" not in second.logs()
        assert password not in second.logs()
        me = httpx.get(f"{second.url}/api/v1/users/me", headers=headers)
        assert me.status_code == 200  # the generated secret was kept: the old token still works
        assert me.json()["role"] == "admin"
    finally:
        second.stop()


def test_serve_logs_no_secrets_sends_no_server_header_and_finishes_in_flight_requests(
    tmp_path: Path,
) -> None:
    server = ServerProcess(
        env={"ORCH_DATA_DIR": str(tmp_path / "data"), "ORCH_ADMIN_PASSWORD": "e2e-secret-pw"},
        log_path=tmp_path / "server.log",
    ).start()
    assert server.process is not None
    try:
        headers = login(server.url, "admin", "e2e-secret-pw")
        token = headers["Authorization"].split()[1]
        response = httpx.get(f"{server.url}/api/v1/users/me?token={token}", headers=headers)
        assert response.status_code == 200
        assert "server" not in response.headers
        assert httpx.head(f"{server.url}/health").status_code == 200

        # A request in flight: headers and half the body sent, the rest held back.
        body = b'{"username": "admin", "password": "e2e-secret-pw"}'
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(
            b"POST /auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:20]
        )
        # The server reads sockets in order: once a later request is answered, ours has started.
        assert httpx.get(f"{server.url}/health").status_code == 200
        server.process.send_signal(signal.SIGTERM)
        _wait_until_refused(server.port)  # shutdown has begun
        sock.sendall(body[20:])
        reply = _read_response(sock)
        sock.close()
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        assert b"access_token" in reply
        assert server.process.wait(15) in (0, -signal.SIGTERM)
    finally:
        server.stop()
    logs = server.logs()
    assert token not in logs
    assert "e2e-secret-pw" not in logs
    routes = {json.loads(line).get("route") for line in logs.splitlines() if line.startswith("{")}
    assert "/api/v1/users/me" in routes  # our access log, with the route template
    assert "Application shutdown complete" in logs


def _wait_until_refused(port: int, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            return
        time.sleep(0.02)
    raise AssertionError("the server kept accepting connections after SIGTERM")


def _read_response(sock: socket.socket) -> bytes:
    sock.settimeout(15)
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
        if b"\r\n\r\n" in reply and reply.endswith(b"}"):
            break
    return reply


def test_make_run_honours_the_environment(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "ORCH_HOST": "127.0.0.1",
        "ORCH_PORT": str(port),
        "ORCH_DATA_DIR": str(tmp_path / "data"),
        "ORCH_DATABASE_URL": f"sqlite:///{tmp_path / 'elsewhere' / 'orch.db'}",
        "ORCH_ADMIN_PASSWORD": "make-run-password",
        "ORCH_CORS_ORIGINS": "http://a.example,http://b.example",
    }
    log = (tmp_path / "make.log").open("wb")
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # make and the server it starts form one group we can stop
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "make.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "make.log").read_text()
            time.sleep(0.05)
        login(f"http://127.0.0.1:{port}", "admin", "make-run-password")
        assert (tmp_path / "elsewhere" / "orch.db").exists()
        assert (tmp_path / "data" / "secret_key").exists()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()
