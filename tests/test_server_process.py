"""The suite's server processes: a port taken by another test's server between `free_port` and
the child's bind must not leave a test talking to that other server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.servers import ServerProcess

pytestmark = pytest.mark.e2e


def test_a_server_whose_port_was_taken_meanwhile_serves_on_another(tmp_path: Path) -> None:
    def server(name: str) -> ServerProcess:
        env = {"ORCH_DATA_DIR": str(tmp_path / name), "ORCH_ADMIN_PASSWORD": f"{name}-password-1"}
        return ServerProcess(env=env, log_path=tmp_path / f"{name}.log")

    first = server("first").start()
    second = server("second")
    second.port = first.port  # as if the first had taken the port chosen for the second
    try:
        second.start()
        assert second.port != first.port
        login = {"username": "admin", "password": "second-password-1"}
        assert httpx.post(second.url + "/api/v1/auth/login", json=login).status_code == 200
    finally:
        first.stop()
        second.stop()
