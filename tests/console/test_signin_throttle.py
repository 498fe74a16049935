"""The sign-in form says clearly when sign-ins are refused for a while (429)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.console.support import console_server, make_user, unique
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose accounts wait two minutes after their second failed sign-in."""
    with console_server(
        tmp_path_factory.mktemp("throttled"),
        ORCH_RATE_LIMIT_ENABLED="true",
        ORCH_RATE_LIMIT_ACCOUNT_FAILURES="1",
        ORCH_RATE_LIMIT_ACCOUNT_DELAY_SECONDS="120",
    ) as proc:
        yield proc


def test_a_throttled_sign_in_says_when_to_try_again(page: Page, server: ServerProcess) -> None:
    username = unique("guessed")
    password = make_user(server, username, "member")
    page.goto("/console")
    for _ in range(2):
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Invalid username or password")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Too many sign-in attempts. Try again in 2 minutes.")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    expect(page.get_by_label("Username")).to_be_focused()
