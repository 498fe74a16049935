"""A real browser (headless Chromium) on the service's origin: it signs in with /auth/session,
follows the change feed with its own EventSource (cookie only, no token anywhere in the page),
keeps following across a server restart without a gap, and signs out."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from orchestrator.db import open_database
from orchestrator.db.changelog import record_change
from orchestrator.representation import canonical_json
from tests.console.browser import launch, visit
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "browser-admin-password"

# Runs in the page: every event of one EventSource, as the page saw it.
FOLLOW = """() => {
    window.seen = [];
    window.subscribed = 0;
    window.feed = new EventSource('/api/v1/changes?collections=tasks');
    window.feed.onmessage = (e) => {
        window.seen.push({id: e.lastEventId, data: JSON.parse(e.data)});
    };
    window.feed.addEventListener('subscribed', () => { window.subscribed += 1; });
}"""
CSRF = "() => (document.cookie.match(/(?:^|; )orch_csrf=([^;]*)/) || [])[1] || null"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


def fetch(page: Page, method: str, path: str, body: object = None) -> dict[str, Any]:
    """`fetch()` from the page itself, with the CSRF header a page of ours would add."""
    result: dict[str, Any] = page.evaluate(
        """async ([method, path, body]) => {
            const match = document.cookie.match(/(?:^|; )orch_csrf=([^;]*)/);
            const csrf = match ? match[1] : null;
            const headers = {'Content-Type': 'application/json'};
            if (csrf) headers['X-CSRF-Token'] = csrf;
            const response = await fetch(path, {
                method, headers, body: body === null ? undefined : JSON.stringify(body),
            });
            return {status: response.status, text: await response.text()};
        }""",
        [method, path, body],
    )
    return result


def write_task_offline(data_dir: Path, title: str) -> str:
    """A task change committed while no server runs (as another process's write would be)."""

    async def write() -> str:
        db = open_database(f"sqlite:///{(data_dir / 'orchestrator.db').resolve()}", timeout=5)
        try:
            task = {"id": str(uuid.uuid4()), "title": title}
            async with db.transaction() as tx:
                await record_change(
                    tx,
                    collection="tasks",
                    op="create",
                    resource_id=task["id"],
                    data=canonical_json(task),
                )
            return task["id"]
        finally:
            await db.close()

    # Playwright's sync API runs an event loop in this thread: write from another one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, write()).result()


def test_a_page_signs_in_follows_the_feed_across_a_restart_and_signs_out(
    browser: Browser, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    server = ServerProcess(
        env={
            "ORCH_ENVIRONMENT": "test",
            "ORCH_DATA_DIR": str(data_dir),
            "ORCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "ORCH_SECRET_KEY": "browser-test-secret-" + "s" * 40,
            "ORCH_CHANGE_POLL_SECONDS": "0.2",
        },
        log_path=tmp_path / "server.log",
    ).start(timeout=120)
    try:
        with visit(browser, server.url) as seen:
            page = seen.new_page()
            page.goto("/docs")  # any page of the service's origin
            signed_in = fetch(
                page, "POST", "/auth/session", {"username": "admin", "password": ADMIN_PASSWORD}
            )
            assert signed_in["status"] == 204, signed_in
            # the session cookie is out of the page's reach; the CSRF cookie is readable
            assert "orch_session" not in page.evaluate("() => document.cookie")
            assert page.evaluate(CSRF)
            assert fetch(page, "GET", "/api/v1/users/me")["status"] == 200

            page.evaluate(FOLLOW)
            page.wait_for_function("() => window.subscribed === 1", timeout=10_000)
            expected = []
            for title in ("before the restart 1", "before the restart 2"):
                created = fetch(page, "POST", "/api/v1/collab/tasks", {"title": title})
                assert created["status"] == 201, created
                expected.append(json.loads(created["text"])["id"])
            page.wait_for_function("() => window.seen.length === 2", timeout=10_000)

            server.stop()
            # written while the page cannot be connected: it must get them on its reconnect
            expected += [write_task_offline(data_dir, f"while down {n}") for n in range(3)]
            server.start(timeout=120)
            page.wait_for_function("() => window.subscribed === 2", timeout=20_000)
            created = fetch(page, "POST", "/api/v1/collab/tasks", {"title": "after the restart"})
            assert created["status"] == 201, created
            expected.append(json.loads(created["text"])["id"])
            page.wait_for_function(f"() => window.seen.length >= {len(expected)}", timeout=10_000)

            events = page.evaluate("() => window.seen")
            assert [e["data"]["id"] for e in events] == expected  # no gap, no duplicate
            revisions = [int(e["id"]) for e in events]
            assert revisions == sorted(set(revisions))

            signed_out = fetch(page, "POST", "/auth/logout")
            assert signed_out["status"] == 204, signed_out
            assert page.evaluate(CSRF) is None  # both cookies cleared
            assert fetch(page, "GET", "/api/v1/users/me")["status"] == 401
            # the stream ends, and its reconnect is refused: EventSource gives up (CLOSED)
            page.wait_for_function("() => window.feed.readyState === 2", timeout=20_000)
            assert seen.off_origin == []
    finally:
        server.stop()
    logs = server.logs()
    assert "Traceback" not in logs, logs[-3000:]
