"""The job page shows the job's log and follows it live, line for line, with no gap."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.console.browser import check_page
from tests.console.support import admin_client, create_job, live, make_user, sign_in, unique
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.e2e


def test_the_job_page_tails_the_jobs_log_live(page: Page, server: ServerProcess) -> None:
    username = unique("tail")
    make_user(server, username, "viewer")
    queue = unique("logs")
    with admin_client(server) as worker:
        job = create_job(worker, "Noisy job", queue)
        claim = worker.post("/api/v1/jobs/claim", json={"queues": [queue]})
        assert claim.status_code == 200, claim.text
        lease = {key: claim.json()["lease"][key] for key in ("token", "secret")}
        url = f"/api/v1/jobs/{job['id']}/logs"

        def append(*lines: str) -> None:
            response = worker.post(url, json={**lease, "lines": list(lines)})
            assert response.status_code == 200, response.text

        append("reading input", "<b>not markup</b>")
        sign_in(page, username)
        page.goto(f"/console#/jobs/{job['id']}")
        live(page)
        log = page.get_by_role("log", name="Job log")
        expect(log).to_have_text("1  reading input\n2  <b>not markup</b>")

        append("step 1")
        append("step 2", "step 3")
        expect(log).to_have_text(
            "1  reading input\n2  <b>not markup</b>\n3  step 1\n4  step 2\n5  step 3"
        )
        expect(page.get_by_text("5 lines, followed live.")).to_be_visible()
        check_page(page, "job-log")

        for call in range(10):
            append(*(f"line {6 + call * 5 + k}" for k in range(5)))
        expect(page.get_by_text("55 lines, followed live.")).to_be_visible()
        text = log.inner_text()
        assert [int(line.split("  ", 1)[0]) for line in text.splitlines()] == list(range(1, 56))
