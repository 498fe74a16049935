"""`/docs` and `/redoc` render in a browser that may reach nothing but the service."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.console.browser import screenshots, visit
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.e2e


def test_swagger_ui_renders_with_every_other_host_blocked(
    browser: Browser, server: ServerProcess
) -> None:
    with visit(browser, server.url) as seen:
        page = seen.new_page()
        page.goto("/docs")
        expect(page.get_by_text("Create a job").first).to_be_visible(timeout=15_000)
        expect(page.get_by_role("heading", name="Orchestrator")).to_be_visible()
        screenshots(page, "docs")
        assert seen.off_origin == []
        assert seen.csp_violations == []
        assert seen.errors == []
        assert f"{server.url}/openapi.json" in seen.requests


def test_redoc_renders_with_every_other_host_blocked(
    browser: Browser, server: ServerProcess
) -> None:
    with visit(browser, server.url) as seen:
        page = seen.new_page()
        page.goto("/redoc")
        expect(page.get_by_role("heading", name="Create a job")).to_be_visible(timeout=15_000)
        screenshots(page, "redoc")
        # ReDoc's bundle shows its maker's logo from a CDN; the page's policy refuses it.
        assert seen.left_origin == []
        assert seen.errors == []
