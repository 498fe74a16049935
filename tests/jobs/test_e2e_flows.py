"""The contract's job and task flows over real HTTP against a real server process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import ServerProcess

pytestmark = pytest.mark.e2e
PASSWORD = "e2e-admin-password"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        env={"ORCH_DATA_DIR": str(tmp_path / "data"), "ORCH_ADMIN_PASSWORD": PASSWORD},
        log_path=tmp_path / "server.log",
    ).start(timeout=90)  # a loaded CI machine can take a while to start a server
    yield proc
    proc.stop()


def test_contract_flows_over_http(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, follow_redirects=False) as http:
        token = http.post("/auth/login", json={"username": "admin", "password": PASSWORD})
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}

        job = http.post("/api/v1/jobs", json={"title": "Process payroll"}, headers=auth)
        assert job.status_code == 201
        assert {"id", "name", "status"} <= set(job.json())
        assert job.headers["location"] == f"/api/v1/jobs/{job.json()['id']}"
        assert (
            http.get(job.headers["location"], headers=auth).headers["etag"] == job.headers["etag"]
        )
        jobs = http.get("/api/v1/jobs", headers=auth)
        assert [j["id"] for j in jobs.json()["jobs"]] == [job.json()["id"]]
        cached = http.get("/api/v1/jobs", headers={**auth, "If-None-Match": jobs.headers["etag"]})
        assert cached.status_code == 304
        assert cached.content == b""

        task = http.post("/api/v1/collab/tasks", json={"title": "Review PR #123"}, headers=auth)
        assert task.status_code == 201
        assert task.headers["location"] == f"/api/v1/collab/tasks/{task.json()['id']}"
        tasks = http.get("/api/v1/collab/state/tasks", headers=auth)
        assert tasks.json() == {"kind": "tasks", "items": [task.json()]}
        assert (
            http.get(
                "/api/v1/collab/state/tasks",
                headers={**auth, "If-None-Match": tasks.headers["etag"]},
            ).status_code
            == 304
        )
        assert http.delete(job.headers["location"], headers=auth).status_code == 204
        assert http.get(job.headers["location"], headers=auth).status_code == 404
