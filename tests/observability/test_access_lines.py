"""Access lines are written together once per turn of the event loop, in their order among the
process's other lines, and none is left behind at exit."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from orchestrator.observability import logging as logs
from tests.support.settings import make_settings


@pytest.fixture
def output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """What the server's logging set-up writes to stdout; the set-up is undone afterwards
    (in-process tests log through structlog's defaults)."""
    stdout = io.StringIO()
    monkeypatch.setattr(sys, "stdout", stdout)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure_logging(make_settings("sqlite://", tmp_path / "data", environment="production"))
    try:
        yield stdout
    finally:
        logs._access_sink = None
        structlog.reset_defaults()
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def _events(text: str) -> list[str]:
    return [json.loads(line)["event"] for line in text.splitlines() if line.startswith("{")]


async def test_access_lines_keep_their_order_among_other_lines(output: io.StringIO) -> None:
    logs.access_line(logging.INFO, "request", method="GET", route="/a", status=200)
    logs.access_line(logging.INFO, "request", method="GET", route="/b", status=200)
    structlog.get_logger("orchestrator.test").warning("after_two_requests")
    logs.access_line(logging.INFO, "request", method="GET", route="/c", status=200)
    await asyncio.sleep(0)  # the loop's next turn
    await asyncio.sleep(0)
    lines = [json.loads(line) for line in output.getvalue().splitlines()]
    assert [(line["event"], line.get("route")) for line in lines] == [
        ("request", "/a"),
        ("request", "/b"),
        ("after_two_requests", None),
        ("request", "/c"),
    ]


def test_an_access_line_written_just_before_exit_is_not_lost(tmp_path: Path) -> None:
    program = f"""
import asyncio, logging
from pathlib import Path
from orchestrator.observability import logging as logs
from tests.support.settings import make_settings
settings = make_settings("sqlite://", Path({str(tmp_path / "data")!r}), environment="production")
logs.configure_logging(settings)

async def main():
    logs.access_line(logging.INFO, "request", method="GET", route="/last", status=200)
    raise SystemExit(0)  # out of the loop at once: its next turn never comes

asyncio.new_event_loop().run_until_complete(main())
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert _events(done.stdout) == ["request"]


@pytest.fixture
def away_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is not UTC (5 h 30 ahead), as on many a server."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def test_access_lines_are_stamped_with_the_utc_time_to_the_microsecond(
    output: io.StringIO, away_from_utc: None
) -> None:
    stamps = []
    for _ in range(3):  # the date and time of day are kept a second: each line gets its own
        before = datetime.now(UTC)
        logs.access_line(logging.INFO, "request", method="GET", route="/a", status=200)
        after = datetime.now(UTC)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        stamp = json.loads(output.getvalue().splitlines()[-1])["timestamp"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)
        assert before - timedelta(microseconds=1) <= datetime.fromisoformat(stamp) <= after
        stamps.append(stamp)
    assert stamps == sorted(stamps)
