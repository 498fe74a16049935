"""The live indicator, resuming after a server restart, and a reload when the log moved on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.console.browser import visit
from tests.console.support import (
    ADMIN_PASSWORD,
    admin_client,
    console_server,
    create_job,
    live,
    row_of,
    sign_in,
    unique,
    wait_until_pruned,
)
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.e2e

FEED = re.compile(r"/api/v1/changes\?")


def test_live_indicator_and_resume_after_a_server_restart(
    page: Page, server: ServerProcess
) -> None:
    queue = unique("restart")
    sign_in(page, "admin", ADMIN_PASSWORD)
    page.goto(f"/console#/jobs?queue={queue}")
    status = page.get_by_role("status")
    expect(status).to_contain_text("Live")
    with admin_client(server) as other:
        create_job(other, "Before the restart", queue)
    expect(row_of(page, "Before the restart")).to_have_count(1)

    # Keep the page from reconnecting until the restarted server has new changes to replay.
    page.route(FEED, lambda route: route.abort())
    server.stop()
    expect(status).to_contain_text("Reconnecting")
    server.start()
    with admin_client(server) as other:
        missed = [create_job(other, f"While away {n}", queue)["name"] for n in range(3)]
    expect(status).to_contain_text("Reconnecting")
    page.unroute(FEED)

    expect(status).to_contain_text("Live", timeout=20_000)
    for name in [*missed, "Before the restart"]:
        expect(row_of(page, name)).to_have_count(1)  # every change once: no gap, no duplicate
    with admin_client(server) as other:
        create_job(other, "After the restart", queue)
    expect(row_of(page, "After the restart")).to_have_count(1)


def test_a_feed_too_far_behind_reloads_the_data_instead_of_failing(
    browser: Browser, tmp_path: Path
) -> None:
    # Changes are kept two seconds: a page away longer must reload what it shows.
    with (
        console_server(
            tmp_path, ORCH_CHANGE_RETENTION_HOURS="0.0005", ORCH_CHANGE_PRUNE_INTERVAL_SECONDS="0.2"
        ) as server,
        visit(browser, server.url) as seen,
    ):
        page = seen.new_page()
        queue = unique("resync")
        sign_in(page, "admin", ADMIN_PASSWORD)
        page.goto(f"/console#/jobs?queue={queue}")
        status = page.get_by_role("status")
        expect(status).to_contain_text("Live")

        page.route(FEED, lambda route: route.abort())
        server.stop()
        server.start()
        with admin_client(server) as other:
            job = create_job(other, "Pruned while away", queue)
            create_job(other, "Kept while away", queue)
        wait_until_pruned(server, job["id"])
        page.unroute(FEED)

        expect(row_of(page, "Pruned while away")).to_have_count(1, timeout=20_000)
        expect(row_of(page, "Kept while away")).to_have_count(1)
        expect(status).to_contain_text("Live")
        expect(page.get_by_text("Could not load")).to_have_count(0)
        assert seen.off_origin == []
        assert seen.errors == []


def test_the_indicator_asks_for_a_reload_when_the_server_serves_another_console(
    page: Page, server: ServerProcess
) -> None:
    sign_in(page, "admin", ADMIN_PASSWORD)
    status = page.get_by_role("status")
    expect(status).to_contain_text("Live")
    # The server cannot be given other files here: after the restart, it answers as one
    # upgraded to another console would.
    page.route(
        "**/console/version.json",
        lambda route: route.fulfill(json={"version": "0123456789abcdef"}),
    )
    server.stop()
    expect(status).to_contain_text("Reconnecting")
    server.start()
    expect(status).to_contain_text("Reload needed", timeout=20_000)
    page.unroute("**/console/version.json")
    page.get_by_role("button", name="Reload").click()
    expect(status).to_contain_text("Live")


def test_an_expired_session_sends_the_person_back_to_sign_in_with_a_message(
    browser: Browser, tmp_path: Path
) -> None:
    # Every session ends 8.6 s after sign-in, however it is used.
    with (
        console_server(tmp_path, ORCH_SESSION_MAX_DAYS="0.0001") as server,
        visit(browser, server.url) as seen,
    ):
        page = seen.new_page()
        sign_in(page, "admin", ADMIN_PASSWORD)
        live(page)
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=30_000)
        expect(page.get_by_role("alert")).to_contain_text("Your session has ended")
        expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(ADMIN_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        live(page)
        assert seen.off_origin == []
        assert seen.errors == []
