"""The README's promise, end to end: a real server, login with the admin password, a token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        env={"ORCH_DATA_DIR": str(tmp_path / "data"), "ORCH_ADMIN_PASSWORD": "e2e-admin-password"},
        log_path=tmp_path / "server.log",
    ).start()
    yield proc
    proc.stop()


def test_login_with_admin_password_over_real_http(server: ServerProcess) -> None:
    response = httpx.post(
        f"{server.url}/auth/login", json={"username": "admin", "password": "e2e-admin-password"}
    )
    assert response.status_code == 200
    assert "server" not in response.headers
    assert response.json()["token_type"] == "bearer"
    assert "e2e-admin-password" not in server.logs()


def test_generated_admin_password_is_written_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = ServerProcess(env={"ORCH_DATA_DIR": str(data)}, log_path=tmp_path / "s.log").start()
    try:
        password_file = data / "admin_password"
        assert password_file.stat().st_mode & 0o777 == 0o600
        password = password_file.read_text().strip()
        response = httpx.post(
            f"{proc.url}/auth/login", json={"username": "admin", "password": password}
        )
        assert response.status_code == 200
    finally:
        # uvicorn re-raises the SIGTERM it handled once shutdown is complete
        assert proc.stop() in (0, -15)
    assert "Application shutdown complete" in proc.logs()
