"""Headless Chromium (Debian's package) driven by Playwright, and what every page is checked for.

Playwright never downloads a browser here: it launches `/usr/bin/chromium` (`apt-get install
chromium`; `.ci/run` does it). Each page's requests are recorded (none may leave the service's
origin, and any that tries is refused), each page can be checked with axe-core, and screenshots
at 1280 and 390 px wide are kept as test artefacts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright, Request

CHROMIUM = os.environ.get("ORCH_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 390, "height": 844}
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("ORCH_TEST_ARTIFACTS", REPO / "build" / "test-artifacts"))
SCREENSHOTS = ARTIFACTS / "console"
# Schemes that never reach the network.
_LOCAL_SCHEMES = frozenset({"data", "blob", "about"})
_SERIOUS = frozenset({"serious", "critical"})


def chromium_or_skip() -> str:
    """The browser's path; skip without it, or fail where CI requires it."""
    if not Path(CHROMIUM).exists():
        message = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("ORCH_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=chromium_or_skip(), args=CHROMIUM_ARGS)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class Visit:
    """A browser context on one origin: every request it made, and its console's complaints."""

    context: BrowserContext
    origin: str
    requests: list[str] = field(default_factory=list)
    off_origin: list[str] = field(default_factory=list)
    refused_by_csp: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def leaves(self, url: str) -> bool:
        return urlsplit(url).scheme not in _LOCAL_SCHEMES and origin_of(url) != self.origin

    def _record(self, request: Request) -> None:
        self.requests.append(request.url)
        if self.leaves(request.url):
            self.off_origin.append(request.url)

    def _failed(self, request: Request) -> None:
        if request.failure == "csp":
            self.refused_by_csp.append(request.url)

    @property
    def left_origin(self) -> list[str]:
        """Requests to another host that the page's own policy did not stop in the browser."""
        return [url for url in self.off_origin if url not in self.refused_by_csp]

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        text = message.text
        if "Content Security Policy" in text or "Content-Security-Policy" in text:
            self.csp_violations.append(text)

    def watch(self, page: Page) -> Page:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        return page

    def new_page(self) -> Page:
        return self.watch(self.context.new_page())


@contextmanager
def visit(browser: Browser, origin: str, **options: object) -> Iterator[Visit]:
    """A fresh context (its own cookies) whose requests off `origin` are recorded and refused."""
    context = browser.new_context(base_url=origin, viewport=WIDE, **options)  # type: ignore[arg-type]
    record = Visit(context=context, origin=origin)
    context.on("request", record._record)
    context.on("requestfailed", record._failed)
    context.route(record.leaves, lambda route: route.abort("blockedbyclient"))
    try:
        yield record
    finally:
        context.close()


def screenshots(page: Page, name: str) -> list[Path]:
    """Full-page screenshots at 1280 and 390 px wide, saved as test artefacts."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    original = page.viewport_size or WIDE
    for label, size in (("1280", WIDE), ("390", NARROW)):
        page.set_viewport_size(size)  # type: ignore[arg-type]
        path = SCREENSHOTS / f"{name}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        saved.append(path)
    page.set_viewport_size(original)  # type: ignore[arg-type]
    return saved


def serious_violations(page: Page) -> str:
    """axe-core's serious and critical violations on the page, as a report ('' when none)."""
    response = Axe().run(page).response
    violations = [v for v in response["violations"] if v.get("impact") in _SERIOUS]
    lines = []
    for violation in violations:
        targets = [", ".join(node["target"]) for node in violation["nodes"]]
        lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']} {targets}")
    return "\n".join(lines)


def check_page(page: Page, name: str) -> None:
    """No serious or critical axe-core violation at either width; screenshots at both."""
    for size in (NARROW, WIDE):
        page.set_viewport_size(size)  # type: ignore[arg-type]
        assert serious_violations(page) == "", (name, size)
    screenshots(page, name)
