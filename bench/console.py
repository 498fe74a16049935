"""The web console in headless Chromium: first-load bytes, time to interactive, the jobs page
with 10,000 jobs, and how soon a job created through the API shows in an open jobs page.

    python bench/console.py                         # 10,000 seeded jobs, 20 live samples
    python bench/console.py --jobs 100000 --samples 50
    python bench/console.py --screenshot docs/console.png

One `orchestrator serve` on SQLite (seeded before it starts), Debian's Chromium driven by
Playwright, both on this machine's loopback. Times are wall-clock and share the machine's
cores with the server and the browser; compare them as ratios within one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.console.browser import CHROMIUM_ARGS, chromium_or_skip
from tests.support.servers import ServerProcess

from bench.seed import seed_jobs

ADMIN_PASSWORD = "bench-console-admin"
SECRET = "bench-console-secret-" + "c" * 40

# Records, in the page, when a row for a given title appears (performance and wall clock).
WATCH_ROWS = """
() => {
  window.__seen = {};
  new MutationObserver(() => {
    for (const link of document.querySelectorAll('tbody a')) {
      if (!(link.textContent in window.__seen)) window.__seen[link.textContent] = Date.now();
    }
  }).observe(document.getElementById('main'), {childList: true, subtree: true});
}
"""


@dataclass
class Figures:
    rows: list[tuple[str, str]]

    def add(self, name: str, value: str) -> None:
        self.rows.append((name, value))

    def table(self) -> str:
        lines = ["| measure | figure |", "|---|---:|"]
        lines += [f"| {name} | {value} |" for name, value in self.rows]
        return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def first_load(page: Page, url: str) -> tuple[int, int, float]:
    """Bytes transferred (headers and bodies) and requests for a cold /console, and the time
    until the sign-in form answers."""
    sizes: list[int] = []

    def finished(request: Any) -> None:
        measured = request.sizes()
        sizes.append(measured["responseBodySize"] + measured["responseHeadersSize"])

    page.on("requestfinished", finished)
    start = time.perf_counter()
    page.goto(f"{url}/console")
    page.get_by_role("button", name="Sign in").wait_for()
    interactive = time.perf_counter() - start
    page.remove_listener("requestfinished", finished)
    return sum(sizes), len(sizes), interactive


def ready_mark(page: Page) -> float:
    """Milliseconds from the navigation's start to the console's first view (its own clock)."""
    value: float = page.evaluate(
        "() => performance.getEntriesByName('console:ready')[0]?.startTime ?? NaN"
    )
    return value


def sign_in(page: Page) -> None:
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()


# Resolves with the wall-clock time at which a row linking to `title` is in the table (in the
# first row only, with `first`): a MutationObserver notices it at once, with no polling delay.
WATCH_ROW = """
([title, first]) => {
  const shown = () => {
    const rows = [...document.querySelectorAll('tbody tr')];
    return (first ? rows.slice(0, 1) : rows)
      .some((tr) => tr.querySelector('a')?.textContent === title);
  };
  window.__shown = new Promise((resolve) => {
    if (shown()) return resolve(Date.now());
    const observer = new MutationObserver(() => {
      if (shown()) {
        observer.disconnect();
        resolve(Date.now());
      }
    });
    observer.observe(document.body, {childList: true, subtree: true, characterData: true});
  });
}
"""


def timed(action: Any, until: Any) -> float:
    start = time.perf_counter()
    action()
    until()
    return time.perf_counter() - start


def until_row(page: Page, action: Any, title: str, *, first: bool = False) -> float:
    """Seconds from just before `action` until a row for `title` is in the table."""
    page.evaluate(WATCH_ROW, [title, first])
    start = time.time()
    action()
    shown: float = page.evaluate("() => window.__shown")
    return shown / 1000 - start


def run(jobs: int, samples: int, screenshot: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "data"
        data.mkdir()
        database_url = f"sqlite:///{(data / 'orchestrator.db').resolve()}"
        seed_start = time.perf_counter()
        seed_jobs(database_url, jobs)
        print(f"seeded {jobs:,} jobs in {time.perf_counter() - seed_start:.1f} s", flush=True)
        server = ServerProcess(
            env={
                "ORCH_ENVIRONMENT": "development",
                "ORCH_DATA_DIR": str(data),
                "ORCH_DATABASE_URL": database_url,
                "ORCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "ORCH_SECRET_KEY": SECRET,
                "ORCH_LOG_LEVEL": "WARNING",
            },
            log_path=root / "server.log",
        ).start(timeout=120)
        figures = Figures([])
        try:
            with (
                sync_playwright() as playwright,
                httpx.Client(base_url=server.url, timeout=30) as api,
            ):
                token = api.post(
                    "/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
                ).json()["access_token"]
                api.headers["Authorization"] = f"Bearer {token}"
                browser = playwright.chromium.launch(
                    executable_path=chromium_or_skip(), args=CHROMIUM_ARGS
                )
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                page = context.new_page()

                transferred, requests, interactive = first_load(page, server.url)
                figures.add("first load of /console: bytes transferred", f"{transferred:,} B")
                figures.add("first load of /console: requests", str(requests))
                figures.add("first load: sign-in form ready (cold)", _ms(interactive))
                figures.add(
                    "first load: navigation start to first view (page's clock)",
                    f"{ready_mark(page):.0f} ms",
                )
                warm = timed(
                    lambda: page.goto(f"{server.url}/console"),
                    lambda: page.get_by_role("button", name="Sign in").wait_for(),
                )
                figures.add("reload: sign-in form ready (cached, revalidated)", _ms(warm))
                figures.add(
                    "reload: navigation start to first view (page's clock)",
                    f"{ready_mark(page):.0f} ms",
                )

                sign_in(page)
                newest = f"seeded job {jobs - 1}"
                shown = until_row(page, lambda: page.goto(f"{server.url}/console#/jobs"), newest)
                figures.add(f"jobs page with {jobs:,} jobs: first page shown", _ms(shown))
                rows = page.locator("tbody tr").count()
                figures.add("rows in the DOM", str(rows))
                if screenshot is not None:
                    screenshot.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(
                        path=str(screenshot), clip={"x": 0, "y": 0, "width": 1280, "height": 600}
                    )
                    print(f"screenshot: {screenshot}")

                older = until_row(
                    page,
                    lambda: page.get_by_role("button", name="Older jobs").click(),
                    f"seeded job {jobs - 51}",
                )
                figures.add("next page (cursor)", _ms(older))
                search = page.get_by_label("Search")
                filtered = until_row(
                    page,
                    lambda: search.fill(f"seeded job {jobs // 2}"),
                    f"seeded job {jobs // 2}",
                    first=True,
                )
                figures.add("search typed to rows shown (300 ms debounce included)", _ms(filtered))
                until_row(page, lambda: search.fill(""), newest, first=True)

                page.evaluate(WATCH_ROWS)
                latencies = []
                for n in range(samples):
                    title = f"live bench job {n}"
                    sent = time.time()
                    assert api.post("/api/v1/jobs", json={"title": title}).status_code == 201
                    page.wait_for_function(f"() => '{title}' in window.__seen", timeout=10_000)
                    latencies.append(page.evaluate(f"() => window.__seen['{title}']") / 1000 - sent)
                latencies.sort()
                figures.add(
                    f"job created by API to row shown (p50 of {samples})",
                    _ms(statistics.median(latencies)),
                )
                figures.add("job created by API to row shown (max)", _ms(latencies[-1]))

                burst = 200
                for n in range(burst):
                    api.post("/api/v1/jobs", json={"title": f"burst job {n}"})
                last_sent = time.time()
                page.wait_for_function(
                    f"() => 'burst job {burst - 1}' in window.__seen", timeout=30_000
                )
                lag = page.evaluate(
                    """() => new Promise((resolve) => {
                        const t = performance.now();
                        setTimeout(() => resolve(performance.now() - t), 0);
                    })"""
                )
                last_shown = page.evaluate(f"() => window.__seen['burst job {burst - 1}']") / 1000
                figures.add(
                    f"{burst} jobs created back to back: last row shown after the last POST",
                    _ms(last_shown - last_sent),
                )
                figures.add("main thread free again after the burst (timer lag)", f"{lag:.0f} ms")
                figures.add(
                    "rows in the DOM after the burst", str(page.locator("tbody tr").count())
                )

                browser.close()
        finally:
            server.stop()
    print(f"console: {jobs:,} jobs, SQLite, Chromium headless, one machine")
    print(figures.table())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--screenshot", type=Path, help="save the jobs page as a PNG here")
    args = parser.parse_args()
    run(args.jobs, args.samples, args.screenshot)


if __name__ == "__main__":
    main()
