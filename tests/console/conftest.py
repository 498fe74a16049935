"""One server process and one browser per test module; a fresh browser context per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.console.browser import SCREENSHOTS, Visit, launch, visit
from tests.console.support import console_server
from tests.support.servers import ServerProcess


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with console_server(tmp_path_factory.mktemp("console")) as proc:
        yield proc


@pytest.fixture
def seen(browser: Browser, server: ServerProcess) -> Iterator[Visit]:
    """A fresh browser context (no cookies); afterwards, nothing may have left the origin."""
    with visit(browser, server.url) as record:
        yield record
        assert record.off_origin == []
        assert record.csp_violations == []
        assert record.errors == []


@pytest.fixture
def page(seen: Visit) -> Page:
    expect.set_options(timeout=10_000)
    return seen.new_page()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SCREENSHOTS.is_dir() and any(SCREENSHOTS.iterdir()):
        terminalreporter.write_line(f"console screenshots: {SCREENSHOTS}")
