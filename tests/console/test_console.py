"""The console in headless Chromium, against a real server: what a person can see and do."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.cli_runner import run_cli
from tests.console.browser import Visit, check_page
from tests.console.support import (
    ADMIN_PASSWORD,
    PASSWORD,
    admin_client,
    api_client,
    create_job,
    live,
    make_user,
    row_of,
    sign_in,
    unique,
)
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.e2e


def test_sign_in_with_the_keyboard_and_sign_out(page: Page, server: ServerProcess) -> None:
    username = unique("signer")
    make_user(server, username, "member")
    page.goto("/console")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    check_page(page, "sign-in")

    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("not the password")
    page.keyboard.press("Enter")
    expect(page.get_by_text("Invalid username or password")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()

    # Keyboard only from here: the username field has focus after a failed attempt.
    expect(page.get_by_label("Username")).to_be_focused()
    page.keyboard.press("Control+A")
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    for name in ("Overview", "Jobs", "Tasks"):
        expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Admin", exact=True)).to_have_count(0)
    live(page)
    # The first page's heading has the focus; the navigation comes before it.
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_focused()
    jobs_link = page.get_by_role("link", name="Jobs", exact=True)
    for _ in range(10):
        page.keyboard.press("Shift+Tab")
        if jobs_link.evaluate("(link) => link === document.activeElement"):
            break
    expect(jobs_link).to_be_focused()
    outline = jobs_link.evaluate("(link) => getComputedStyle(link).outlineStyle")
    assert outline != "none"  # focus is visible
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_visible()
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["orch_csrf"]["httpOnly"] is False
    assert any(c["httpOnly"] for c in cookies.values())
    assert (
        page.evaluate("() => Object.keys(localStorage).length + Object.keys(sessionStorage).length")
        == 0
    )

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_text("You have signed out.")).to_be_visible()
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_jobs_table_follows_another_clients_job_live(page: Page, server: ServerProcess) -> None:
    username = unique("watcher")
    make_user(server, username, "viewer")
    queue = unique("live")
    sign_in(page, username)
    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_visible()
    page.get_by_label("Queue", exact=True).fill(queue)
    live(page)
    table = page.get_by_role("table")
    for header in ("Title", "Queue", "Status", "Attempts"):
        expect(table.get_by_role("columnheader", name=header, exact=True)).to_be_visible()

    with admin_client(server) as other:
        job = create_job(other, "Render the report", queue)
        row = row_of(page, "Render the report")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("pending")

        claim = other.post("/api/v1/jobs/claim", json={"queues": [queue], "worker": "w-1"})
        assert claim.status_code == 200, claim.text
        lease = {key: claim.json()["lease"][key] for key in ("token", "secret")}
        expect(row).to_contain_text("running")
        expect(row).to_contain_text("1 / 3")

        done = other.post(f"/api/v1/jobs/{job['id']}/complete", json={**lease, "result": {}})
        assert done.status_code == 200, done.text
        expect(row).to_contain_text("succeeded")
        expect(row_of(page, "Render the report")).to_have_count(1)  # moved, never duplicated


def test_cancel_one_job_and_several_at_once(page: Page, server: ServerProcess) -> None:
    username = unique("canceller")
    make_user(server, username, "member")
    queue = unique("cancel")
    with api_client(server, username, PASSWORD) as mine:
        single = create_job(mine, "Single job", queue)
        batch = [create_job(mine, f"Batch job {n}", queue) for n in range(3)]
    with admin_client(server) as other:
        theirs = create_job(other, "Not my job", queue)
    sign_in(page, username)

    page.goto(f"/console#/jobs/{single['id']}")
    expect(page.get_by_role("heading", name="Single job")).to_be_visible()
    page.get_by_role("button", name="Cancel", exact=True).click()
    expect(page.get_by_role("region", name="Details")).to_contain_text("cancelled")
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_disabled()

    page.goto(f"/console#/jobs?queue={queue}")
    for job in batch[:2]:
        page.get_by_label(f"Select {job['name']}").check()
    page.get_by_role("button", name="Cancel selected").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Cancel 2 jobs?")
    with page.expect_request(lambda r: r.url.endswith("/api/v1/jobs/bulk")) as sent:
        dialog.get_by_role("button", name="Cancel 2 jobs").click()
    assert sent.value.method == "POST"
    assert sent.value.post_data_json == {"action": "cancel", "ids": [j["id"] for j in batch[:2]]}
    for job in batch[:2]:
        expect(row_of(page, job["name"])).to_contain_text("cancelled")
    expect(row_of(page, batch[2]["name"])).to_contain_text("pending")
    expect(page.get_by_text("Cancelled 2 jobs.")).to_be_visible()

    # A member's selection may hold another's job: the server leaves it, the page says so.
    page.get_by_label(f"Select {batch[2]['name']}").check()
    page.get_by_label("Select Not my job").check()
    page.get_by_role("button", name="Cancel selected").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel 2 jobs").click()
    expect(page.get_by_text("Cancelled 1 of 2 selected jobs")).to_be_visible()
    expect(row_of(page, batch[2]["name"])).to_contain_text("cancelled")
    expect(row_of(page, "Not my job")).to_contain_text("pending")
    with admin_client(server) as other:
        assert other.get(f"/api/v1/jobs/{theirs['id']}").json()["status"] == "pending"

    # On another's job's page a member has no enabled action (the API would refuse them all).
    page.goto(f"/console#/jobs/{theirs['id']}")
    expect(page.get_by_role("heading", name="Not my job", level=1)).to_be_visible()
    expect(page.get_by_role("region", name="Details")).to_contain_text("pending")
    for name in ("Cancel", "Retry", "Delete"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_disabled()


def test_retry_and_delete_a_job_and_a_selection(page: Page, server: ServerProcess) -> None:
    username = unique("retrier")
    make_user(server, username, "member")
    queue = unique("retry")
    with api_client(server, username, PASSWORD) as mine:
        failed = create_job(mine, "Flaky job", queue)
        doomed = [create_job(mine, f"Doomed job {n}", queue) for n in range(2)]
        kept = create_job(mine, "Kept job", queue)
        for job in (failed, *doomed):
            assert mine.post(f"/api/v1/jobs/{job['id']}/cancel").status_code == 200
    sign_in(page, username)

    page.goto(f"/console#/jobs/{failed['id']}")
    details = page.get_by_role("region", name="Details")
    expect(details).to_contain_text("cancelled")
    with page.expect_request(lambda r: r.url.endswith(f"/jobs/{failed['id']}/retry")) as sent:
        page.get_by_role("button", name="Retry", exact=True).click()
    assert sent.value.method == "POST"
    expect(details).to_contain_text("pending")
    expect(page.get_by_role("button", name="Retry", exact=True)).to_be_disabled()

    page.get_by_role("button", name="Delete", exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Delete this job?")
    dialog.get_by_role("button", name="Delete the job").click()
    expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_visible()
    with api_client(server, username, PASSWORD) as mine:
        assert mine.get(f"/api/v1/jobs/{failed['id']}").status_code == 404

    page.goto(f"/console#/jobs?queue={queue}")
    expect(row_of(page, kept["name"])).to_have_count(1)
    for job in doomed:
        page.get_by_label(f"Select {job['name']}").check()
    page.get_by_role("button", name="Retry selected").click()
    page.get_by_role("dialog").get_by_role("button", name="Retry 2 jobs").click()
    expect(page.get_by_text("Retried 2 jobs.")).to_be_visible()
    for job in doomed:
        expect(row_of(page, job["name"])).to_contain_text("pending")
        page.get_by_label(f"Select {job['name']}").check()
    page.get_by_role("button", name="Delete selected").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("This touches 2 jobs")
    dialog.get_by_role("button", name="Delete 2 jobs").click()
    for job in doomed:
        expect(row_of(page, job["name"])).to_have_count(0)
    expect(row_of(page, kept["name"])).to_have_count(1)


def test_filters_by_status_queue_and_search(page: Page, server: ServerProcess) -> None:
    username = unique("filterer")
    make_user(server, username, "member")
    queue = unique("filter")
    with api_client(server, username, PASSWORD) as mine:
        create_job(mine, "Invoice March", queue)
        create_job(mine, "Invoice April", queue)
        gone = create_job(mine, "Report April", queue)
        create_job(mine, "Invoice elsewhere", unique("other"))
        assert mine.post(f"/api/v1/jobs/{gone['id']}/cancel").status_code == 200
    sign_in(page, username)
    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(page.get_by_role("heading", name="Jobs", level=1)).to_be_visible()
    page.get_by_label("Queue", exact=True).fill(queue)
    for name in ("Invoice March", "Invoice April", "Report April"):
        expect(row_of(page, name)).to_have_count(1)
    expect(row_of(page, "Invoice elsewhere")).to_have_count(0)

    page.get_by_label("Search").fill("invoice")
    expect(row_of(page, "Report April")).to_have_count(0)
    expect(row_of(page, "Invoice March")).to_have_count(1)
    expect(row_of(page, "Invoice April")).to_have_count(1)

    page.get_by_label("Search").fill("")
    page.get_by_label("Status").select_option("cancelled")
    expect(row_of(page, "Report April")).to_have_count(1)
    expect(row_of(page, "Invoice March")).to_have_count(0)
    assert "status=cancelled" in page.url
    options = page.get_by_label("Status").locator("option").all_inner_texts()
    assert options[0] == "Any status"
    assert {"pending", "running", "succeeded", "failed", "cancelled"} <= set(options)


def test_a_task_edit_that_loses_a_race_shows_both_versions(
    page: Page, server: ServerProcess
) -> None:
    username = unique("editor")
    make_user(server, username, "member")
    with admin_client(server) as other:
        created = other.post("/api/v1/collab/tasks", json={"title": unique("Plan")})
        assert created.status_code == 201
        task = created.json()
        sign_in(page, username)
        page.get_by_role("link", name="Tasks", exact=True).click()
        page.get_by_role("button", name=f"Edit {task['title']}").click()
        page.get_by_label("Title", exact=True).fill("Mine wins")

        theirs = other.patch(
            f"/api/v1/collab/tasks/{task['id']}",
            json={"title": "Theirs first"},
            headers={"If-Match": created.headers["etag"]},
        )
        assert theirs.status_code == 200
        page.get_by_role("button", name="Save").click()

        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("changed by someone else")
        theirs_shown = page.get_by_role("region", name="Their version")
        mine_shown = page.get_by_role("region", name="Your edit")
        expect(theirs_shown).to_contain_text("Theirs first")
        expect(mine_shown).to_contain_text("Mine wins")
        assert other.get(f"/api/v1/collab/tasks/{task['id']}").json()["title"] == "Theirs first"
        check_page(page, "tasks-conflict")

        page.get_by_role("button", name="Apply my edit").click()
        expect(page.get_by_role("alert")).to_have_count(0)
        assert other.get(f"/api/v1/collab/tasks/{task['id']}").json()["title"] == "Mine wins"


def test_form_errors_from_the_api_are_shown_next_to_the_field(
    page: Page, server: ServerProcess
) -> None:
    username = unique("writer")
    make_user(server, username, "member")
    sign_in(page, username)
    page.get_by_role("link", name="Tasks", exact=True).click()
    page.get_by_role("button", name="New task").click()
    title = page.get_by_label("Title", exact=True)
    title.fill("x" * 201)
    page.get_by_role("button", name="Save").click()
    expect(title).to_have_attribute("aria-invalid", "true")
    error = page.locator(f"#{title.get_attribute('aria-describedby')}")
    expect(error).to_contain_text("200 characters")
    title.fill("A task of my own")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("cell", name="A task of my own", exact=True)).to_be_visible()


def test_a_viewer_has_no_enabled_action(page: Page, server: ServerProcess) -> None:
    username = unique("viewer")
    make_user(server, username, "viewer")
    queue = unique("view")
    with admin_client(server) as other:
        job = create_job(other, "Look, do not touch", queue)
        other.post("/api/v1/collab/tasks", json={"title": unique("Viewer task")})
    sign_in(page, username)
    expect(page.get_by_role("link", name="Admin", exact=True)).to_have_count(0)

    page.goto(f"/console#/jobs?queue={queue}")
    expect(row_of(page, "Look, do not touch")).to_have_count(1)
    expect(page.get_by_label("Select Look, do not touch")).to_be_disabled()
    expect(page.get_by_role("button", name="Cancel selected")).to_be_disabled()

    page.goto(f"/console#/jobs/{job['id']}")
    for name in ("Cancel", "Retry", "Delete"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_disabled()

    page.get_by_role("link", name="Tasks", exact=True).click()
    expect(page.get_by_role("button", name="New task")).to_be_disabled()
    expect(page.get_by_role("button", name=re.compile("^Edit "))).not_to_have_count(0)
    for button in page.get_by_role("button").all():
        if button.is_visible() and button.inner_text() != "Sign out":
            expect(button).to_be_disabled()
    checkboxes = page.get_by_role("checkbox").all()
    assert all(box.is_disabled() for box in checkboxes)


def test_every_page_is_accessible_and_nothing_leaves_the_origin(
    page: Page, seen: Visit, server: ServerProcess
) -> None:
    with admin_client(server) as other:
        job = create_job(other, "Accessible job", unique("a11y"))
        other.post("/api/v1/collab/tasks", json={"title": "Accessible task"})
    sign_in(page, "admin", ADMIN_PASSWORD)
    live(page)
    for name, hash_, heading in [
        ("overview", "#/overview", "Overview"),
        ("jobs", "#/jobs", "Jobs"),
        ("job", f"#/jobs/{job['id']}", "Accessible job"),
        ("tasks", "#/tasks", "Tasks"),
        ("admin", "#/admin", "Admin"),
    ]:
        page.goto(f"/console{hash_}")
        expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
        check_page(page, name)
    assert seen.requests, "the recorder saw the page's requests"
    assert all(url.startswith(server.url) for url in seen.requests), seen.requests


def test_a_revoked_session_sends_the_person_back_to_sign_in_with_a_message(
    page: Page, server: ServerProcess
) -> None:
    username = unique("revoked")
    make_user(server, username, "member")
    sign_in(page, username)
    live(page)
    env = {key: value for key, value in server.env.items() if key.startswith("ORCH_")}
    disabled = run_cli("users", "disable", username, env=env)
    assert disabled.returncode == 0, disabled.stderr
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=15_000)
    expect(page.get_by_role("alert")).to_contain_text("Your session has ended")
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()


def test_a_jobs_page_shows_its_payload_result_error_lease_and_history(
    page: Page, server: ServerProcess
) -> None:
    queue = unique("detail")
    worker = unique("worker")
    sign_in(page, "admin", ADMIN_PASSWORD)
    live(page)
    with admin_client(server) as other:
        created = other.post(
            "/api/v1/jobs",
            json={"title": "Resize images", "queue": queue, "payload": {"sizes": [64, 128]}},
        )
        assert created.status_code == 201, created.text
        job = created.json()
        page.goto(f"/console#/jobs/{job['id']}")
        expect(page.get_by_role("heading", name="Resize images", level=1)).to_be_visible()
        payload = page.get_by_role("region", name="Payload")
        expect(payload.locator("pre")).to_have_text('{\n  "sizes": [\n    64,\n    128\n  ]\n}')
        expect(page.get_by_role("region", name="Result")).to_contain_text("No result yet.")

        claim = other.post("/api/v1/jobs/claim", json={"queues": [queue], "worker": worker})
        assert claim.status_code == 200, claim.text
        lease = {key: claim.json()["lease"][key] for key in ("token", "secret")}
        details = page.get_by_role("region", name="Details")
        expect(details).to_contain_text(f"{worker} (holds the lease)")
        expect(details).to_contain_text("1 of at most 3")
        failed = other.post(
            f"/api/v1/jobs/{job['id']}/fail",
            json={**lease, "error": "disk full", "retry": False},
        )
        assert failed.status_code == 200, failed.text
        expect(page.get_by_role("region", name="Error")).to_contain_text("disk full")
        expect(details).to_contain_text("failed")

    history = page.get_by_role("region", name="Job history")
    rows = history.get_by_role("row")
    expect(rows).to_have_count(4)  # the header, then newest first: failed, running, created
    expect(rows.nth(1)).to_contain_text("failed")
    expect(rows.nth(2)).to_contain_text("running")
    expect(rows.nth(2)).to_contain_text(worker)
    expect(rows.nth(3)).to_contain_text("create")
    expect(rows.nth(3)).to_contain_text("pending")


def test_tasks_created_changed_and_deleted_by_others_appear_live(
    page: Page, server: ServerProcess
) -> None:
    username = unique("reader")
    make_user(server, username, "viewer")
    sign_in(page, username)
    page.get_by_role("link", name="Tasks", exact=True).click()
    expect(page.get_by_role("heading", name="Tasks", level=1)).to_be_visible()
    live(page)
    title = unique("Shared plan")
    with admin_client(server) as other:
        created = other.post("/api/v1/collab/tasks", json={"title": title})
        assert created.status_code == 201
        task = created.json()
        expect(page.get_by_role("cell", name=title, exact=True)).to_be_visible()
        renamed = other.patch(
            f"/api/v1/collab/tasks/{task['id']}",
            json={"title": f"{title} v2", "description": "Now with a description"},
            headers={"If-Match": created.headers["etag"]},
        )
        assert renamed.status_code == 200
        expect(page.get_by_role("cell", name=f"{title} v2", exact=True)).to_be_visible()
        expect(page.get_by_role("cell", name=title, exact=True)).to_have_count(0)
        deleted = other.delete(
            f"/api/v1/collab/tasks/{task['id']}", headers={"If-Match": renamed.headers["etag"]}
        )
        assert deleted.status_code == 204
        expect(page.get_by_role("cell", name=f"{title} v2", exact=True)).to_have_count(0)


def test_statuses_the_api_adds_are_kept_in_lifecycle_order(page: Page) -> None:
    # The console's own module, in the browser: any status reported joins the known ones.
    page.goto("/console")
    listed = page.evaluate(
        """async () => {
            const { Statuses } = await import("/console/statuses.js");
            const statuses = new Statuses();
            const added = [];
            statuses.addEventListener("added", (event) => added.push(event.detail));
            statuses.noteQueues([{ name: "mail", counts: { pending: 1, waiting: 2, running: 0 } }]);
            statuses.note("archived");
            statuses.note("pending");
            return { list: statuses.list(), added };
        }"""
    )
    assert listed == {
        "list": ["waiting", "pending", "running", "succeeded", "failed", "cancelled", "archived"],
        "added": ["archived"],
    }


def test_a_selection_is_cancelled_with_the_keyboard_alone(
    page: Page, server: ServerProcess
) -> None:
    username = unique("typist")
    make_user(server, username, "member")
    queue = unique("keys")
    with api_client(server, username, PASSWORD) as mine:
        job = create_job(mine, unique("Keyboard job"), queue)
    sign_in(page, username)
    page.goto(f"/console#/jobs?queue={queue}")
    live(page)
    box = page.get_by_label(f"Select {job['name']}")
    box.focus()
    page.keyboard.press("Space")
    expect(box).to_be_checked()
    cancel = page.get_by_role("button", name="Cancel selected")
    for _ in range(20):
        if cancel.evaluate("(button) => button === document.activeElement"):
            break
        page.keyboard.press("Shift+Tab")
    expect(cancel).to_be_focused()

    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("button", name="Go back")).to_be_focused()
    page.keyboard.press("Escape")  # closes it, and nothing happens
    expect(dialog).to_have_count(0)
    expect(cancel).to_be_focused()
    expect(row_of(page, job["name"])).to_contain_text("pending")

    page.keyboard.press("Enter")
    expect(dialog.get_by_role("button", name="Go back")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(dialog.get_by_role("button", name="Cancel 1 job")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_text("Cancelled 1 job.")).to_be_visible()
    expect(row_of(page, job["name"])).to_contain_text("cancelled")
