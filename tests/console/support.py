"""The server the browser tests drive, and accounts made for them."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Locator, Page, expect

from orchestrator.auth.users import Role
from orchestrator.db import open_database
from tests.support.servers import ServerProcess
from tests.support.users import make_user as store_user

ADMIN_PASSWORD = "console-admin-password"
PASSWORD = "console user password"


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'orchestrator.db').resolve()}"


@contextmanager
def console_server(root: Path, **env: str) -> Iterator[ServerProcess]:
    """`orchestrator serve` on SQLite in `root`, stopped (and checked for tracebacks) after."""
    proc = ServerProcess(
        env={
            "ORCH_ENVIRONMENT": "test",
            "ORCH_DATA_DIR": str(root / "data"),
            "ORCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "ORCH_SECRET_KEY": "console-test-secret-" + "s" * 40,
            "ORCH_CHANGE_POLL_SECONDS": "0.2",
            "ORCH_LOG_LEVEL": "WARNING",
            **env,
        },
        log_path=root / "server.log",
    ).start(timeout=120)
    try:
        yield proc
    finally:
        proc.stop()
    tracebacks = [line for line in proc.logs().splitlines() if "Traceback" in line]
    assert tracebacks == [], proc.logs()[-3000:]


def make_user(server: ServerProcess, username: str, role: Role = "member") -> str:
    """Create an account in the server's database (as the CLI does); returns its password."""

    async def create() -> None:
        db = open_database(sqlite_url(Path(server.env["ORCH_DATA_DIR"])), timeout=5)
        try:
            await store_user(db, username, role, password=PASSWORD)
        finally:
            await db.close()

    # Playwright's synchronous API keeps an event loop running on this thread.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, create()).result()
    return PASSWORD


def api_client(server: ServerProcess, username: str, password: str) -> httpx.Client:
    """Another client of the API (a script, a worker): logged in with a bearer token."""
    response = httpx.post(
        f"{server.url}/auth/login", json={"username": username, "password": password}, timeout=10
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def admin_client(server: ServerProcess) -> httpx.Client:
    return api_client(server, "admin", ADMIN_PASSWORD)


def create_job(client: httpx.Client, title: str, queue: str = "console") -> dict[str, Any]:
    response = client.post("/api/v1/jobs", json={"title": title, "queue": queue})
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def wait_until_pruned(server: ServerProcess, resource_id: str, timeout: float = 20.0) -> None:
    """Wait until the server's change log no longer holds any change of `resource_id`."""
    path = Path(server.env["ORCH_DATA_DIR"]) / "orchestrator.db"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with closing(sqlite3.connect(path, timeout=5)) as db:
            (count,) = db.execute(
                "SELECT count(*) FROM changes WHERE resource_id = ?", (resource_id,)
            ).fetchone()
        if count == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"the change log still holds {resource_id} after {timeout} s")


def unique(prefix: str) -> str:
    """A name no other test of the shared server uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def sign_in(page: Page, username: str, password: str = PASSWORD) -> None:
    """Sign in through the console's own form (a browser session)."""
    page.goto("/console")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def live(page: Page) -> None:
    """The live indicator says the feed is connected."""
    expect(page.get_by_role("status")).to_contain_text("Live")


def row_of(page: Page, title: str) -> Locator:
    """The table row that links to the job or task `title`."""
    return page.get_by_role("row").filter(has=page.get_by_role("link", name=title, exact=True))
