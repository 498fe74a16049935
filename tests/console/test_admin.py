"""The admin page: accounts and API keys, through the public routes, for admins only."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.console.browser import check_page
from tests.console.support import (
    ADMIN_PASSWORD,
    PASSWORD,
    admin_client,
    make_user,
    sign_in,
    unique,
)
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.e2e


def test_an_admin_creates_a_user_changes_its_role_and_disables_it(
    page: Page, server: ServerProcess
) -> None:
    sign_in(page, "admin", ADMIN_PASSWORD)
    page.get_by_role("link", name="Admin", exact=True).click()
    users = page.get_by_role("region", name="Users table")
    expect(users.get_by_role("rowheader", name="admin (you)")).to_be_visible()

    # The API's reasons show next to the fields they name.
    page.get_by_label("Username", exact=True).fill("not a name!")
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_role("button", name="Create user").click()
    for label in ("Username", "Password"):
        field = page.get_by_label(label, exact=True)
        expect(field).to_have_attribute("aria-invalid", "true")
        expect(page.locator(f"#{field.get_attribute('aria-describedby')}")).not_to_be_empty()

    username = unique("newcomer")
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Role", exact=True).select_option("member")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Create user").click()
    row = users.get_by_role("row").filter(has=page.get_by_role("rowheader", name=username))
    expect(row).to_contain_text("active")
    expect(page.get_by_label("Username", exact=True)).to_have_value("")

    page.get_by_label(f"Role of {username}", exact=True).select_option("viewer")
    page.get_by_role("button", name=f"Change role of {username}").click()
    expect(page.get_by_text(f"{username} is now viewer.")).to_be_visible()
    with admin_client(server) as other:
        listed = {u["username"]: u for u in other.get("/api/v1/users").json()["users"]}
    assert listed[username]["role"] == "viewer"

    page.get_by_role("button", name=f"Disable {username}").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Disable {username}?")
    dialog.get_by_role("button", name=f"Disable {username}").click()
    expect(row).to_contain_text("disabled")
    expect(page.get_by_role("button", name=f"Enable {username}")).to_be_enabled()
    refused = httpx.post(
        f"{server.url}/auth/login", json={"username": username, "password": PASSWORD}, timeout=10
    )
    assert refused.status_code == 401


def test_an_api_key_is_shown_once_copied_listed_and_revoked(
    page: Page, server: ServerProcess
) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, "admin", ADMIN_PASSWORD)
    page.goto("/console#/admin")
    name = unique("nightly worker")

    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Expires in days").fill("0")
    page.get_by_role("button", name="Create key").click()
    days = page.get_by_label("Expires in days")
    expect(days).to_have_attribute("aria-invalid", "true")
    expect(page.locator(f"#{days.get_attribute('aria-describedby')}")).not_to_be_empty()

    days.fill("30")
    page.get_by_label("Read only").check()
    page.get_by_role("button", name="Create key").click()
    shown = page.get_by_label("The new key")
    expect(shown).to_have_value(re.compile(r"^orch_[0-9A-Za-z]+_[0-9A-Za-z]{6}$"))
    expect(page.get_by_text("it is shown this once")).to_be_visible()
    key = shown.input_value()
    check_page(page, "admin-new-key")
    page.get_by_role("button", name="Copy key").click()
    expect(page.get_by_text("Copied.")).to_be_visible()
    assert page.evaluate("() => navigator.clipboard.readText()") == key

    keys = page.get_by_role("region", name="API keys table")
    row = keys.get_by_role("row").filter(has=page.get_by_role("rowheader", name=name))
    expect(row).to_contain_text("read only")
    expect(row).to_contain_text("admin")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        me = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200, me.text

        page.get_by_role("button", name="Done").click()
        expect(page.get_by_label("The new key")).to_have_count(0)
        assert key not in page.content()  # shown once: nowhere on the page any more

        page.get_by_role("button", name=f"Revoke {name}").click()
        page.get_by_role("dialog").get_by_role("button", name="Revoke the key").click()
        expect(row).to_have_count(0)
        revoked = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {key}"})
        assert revoked.status_code == 401


def test_the_admin_page_is_for_admins_only(page: Page, server: ServerProcess) -> None:
    username = unique("member")
    make_user(server, username, "member")
    sign_in(page, username)
    expect(page.get_by_role("link", name="Admin", exact=True)).to_have_count(0)
    page.goto("/console#/admin")
    expect(page.get_by_text("Only admins can see this page.")).to_be_visible()
    expect(page.get_by_role("button", name="Create user")).to_have_count(0)
    expect(page.get_by_role("button", name="Create key")).to_have_count(0)


def test_accounts_changed_elsewhere_show_up_live(page: Page, server: ServerProcess) -> None:
    sign_in(page, "admin", ADMIN_PASSWORD)
    page.get_by_role("link", name="Admin", exact=True).click()
    users = page.get_by_role("region", name="Users table")
    expect(users.get_by_role("rowheader", name="admin (you)")).to_be_visible()
    username = unique("elsewhere")
    with admin_client(server) as other:
        made = other.post(
            "/api/v1/users", json={"username": username, "password": PASSWORD, "role": "viewer"}
        )
        assert made.status_code == 201, made.text
        row = users.get_by_role("row").filter(has=page.get_by_role("rowheader", name=username))
        expect(row).to_contain_text("active")  # no reload: the feed brought it
        disabled = other.patch(f"/api/v1/users/{username}", json={"disabled": True})
        assert disabled.status_code == 200, disabled.text
        expect(row).to_contain_text("disabled")
