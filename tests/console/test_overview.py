"""The overview: running jobs, the workers holding leases and the throughput chart, live."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.console.support import ADMIN_PASSWORD, admin_client, create_job, live, sign_in, unique
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.e2e


def claim(client: httpx.Client, queue: str, worker: str) -> dict[str, Any]:
    response = client.post("/api/v1/jobs/claim", json={"queues": [queue], "worker": worker})
    assert response.status_code == 200, response.text
    claimed: dict[str, Any] = response.json()
    return claimed


def lease_of(claimed: dict[str, Any]) -> dict[str, str]:
    return {key: claimed["lease"][key] for key in ("token", "secret")}


def test_the_overview_shows_running_jobs_workers_and_throughput_live(
    page: Page, server: ServerProcess
) -> None:
    queue = unique("overview")
    first, second = unique("worker"), unique("worker")
    with admin_client(server) as other:
        slow = create_job(other, unique("Slow job"), queue)
        quick = create_job(other, unique("Quick job"), queue)
        held = claim(other, queue, first)
        assert held["job"]["id"] == slow["id"]
        done = claim(other, queue, first)
        finished = other.post(
            f"/api/v1/jobs/{quick['id']}/complete", json={**lease_of(done), "result": {}}
        )
        assert finished.status_code == 200, finished.text

        sign_in(page, "admin", ADMIN_PASSWORD)
        live(page)
        expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
        running = page.get_by_role("region", name="Running jobs table")
        workers = page.get_by_role("region", name="Workers holding leases")
        row = running.get_by_role("row").filter(has=page.get_by_role("link", name=slow["name"]))
        expect(row).to_contain_text(first)
        expect(workers).to_contain_text(f"{first}: 1 running job")
        chart = page.get_by_role("img", name="succeeded")
        expect(chart).to_be_visible()
        assert chart.evaluate("(svg) => svg.tagName") == "svg"  # drawn by the page
        expect(page.get_by_text("succeeded: 0")).to_have_count(0)
        expect(page.get_by_role("link", name="running", exact=True)).to_be_visible()

        # Live, from the feed: another worker takes a job, the first one finishes its own.
        later = create_job(other, unique("Later job"), queue)
        taken = claim(other, queue, second)
        assert taken["job"]["id"] == later["id"]
        expect(workers).to_contain_text(f"{second}: 1 running job")
        assert (
            other.post(
                f"/api/v1/jobs/{slow['id']}/complete", json={**lease_of(held), "result": {}}
            ).status_code
            == 200
        )
        expect(row).to_have_count(0)
        expect(workers).not_to_contain_text(first)


def cell(table: Locator, row: Locator, header: str) -> Locator:
    """`row`'s cell under the column `header` (the row's own header cell comes first)."""
    headers = table.get_by_role("columnheader").all_inner_texts()
    return row.get_by_role("cell").nth(headers.index(header) - 1)


def test_the_overview_counts_jobs_by_status_and_queue_and_pauses_a_queue(
    page: Page, server: ServerProcess
) -> None:
    queue = unique("counted")
    with admin_client(server) as other:
        for n in range(2):
            create_job(other, unique(f"Counted {n}"), queue)
        dropped = create_job(other, unique("Dropped"), queue)
        assert other.post(f"/api/v1/jobs/{dropped['id']}/cancel").status_code == 200

        sign_in(page, "admin", ADMIN_PASSWORD)
        live(page)
        table = page.get_by_role("region", name="Queues table")
        row = table.get_by_role("row").filter(has=page.get_by_role("rowheader", name=queue))
        expect(row).to_contain_text("active")
        expect(cell(table, row, "pending")).to_have_text("2")
        expect(cell(table, row, "cancelled")).to_have_text("1")
        expect(cell(table, row, "running")).to_have_text("0")
        expect(cell(table, row, "Oldest pending")).to_have_text(re.compile(r"^\d+ (s|min) ago$"))
        totals = page.get_by_role("list", name="Jobs by status")
        link = page.get_by_role("link", name="pending", exact=True)
        pending = totals.get_by_role("listitem").filter(has=link)
        expect(pending).to_contain_text(re.compile(r"^\s*[\d,]+\s*pending"))

        create_job(other, unique("Counted later"), queue)
        expect(cell(table, row, "pending")).to_have_text("3")  # live: no reload

        page.get_by_role("button", name=f"Pause {queue}").click()
        expect(row).to_contain_text("paused")
        expect(page.get_by_role("button", name=f"Resume {queue}")).to_be_focused()
        assert other.get(f"/api/v1/queues/{queue}").json()["paused"] is True

        # Another admin resumes it: the page follows the feed.
        resumed = other.patch(f"/api/v1/queues/{queue}", json={"paused": False, "max_running": 2})
        assert resumed.status_code == 200, resumed.text
        expect(row).to_contain_text("active")
        expect(row).to_contain_text("at most 2 running")
