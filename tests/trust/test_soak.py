"""The soak script, shortened for CI: no errors, nothing missed or duplicated, bounded RSS."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bench.soak import Subscriber, check

from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
)

ROOT = Path(__file__).resolve().parents[2]
SUBSCRIBERS = 200
DURATION_SECONDS = 8
OK_LINE = re.compile(
    r"^errors 0, missed 0, duplicated 0, out-of-order 0, unexpected 0, "
    r"RSS growth -?[0-9.]+ MB: OK$",
    re.MULTILINE,
)


def test_check_counts_against_the_log_not_a_range() -> None:
    # The log's jobs/tasks revisions: 3 is a users change, which no subscriber gets.
    log = [2, 4, 5, 6]
    subs = [
        Subscriber(revisions=[2, 4, 5, 6], ack_revision=1),  # all of it
        Subscriber(revisions=[5, 6], ack_revision=4),  # all after its ack
        Subscriber(revisions=[2, 5, 5, 6], ack_revision=1),  # 4 missed, 5 twice
        Subscriber(revisions=[2, 5, 4, 6], ack_revision=1),  # out of order
        Subscriber(revisions=[2, 3, 4, 5, 6, 7], ack_revision=1),  # a users change, past the end
        Subscriber(error="closed"),  # never subscribed: an error, not a miss
    ]
    assert check(subs, log, last=6) == {
        "missed": 1,
        "duplicated": 1,
        "out_of_order": 2,
        "unexpected": 2,
    }


def run_soak(*extra: str) -> float:
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "soak.py"),
            "--subscribers",
            str(SUBSCRIBERS),
            "--duration",
            str(DURATION_SECONDS),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,  # the script bounds itself to 90 s
        check=False,
        cwd=ROOT,
    )
    output = result.stdout + result.stderr[-5000:]
    assert result.returncode == 0, output
    assert OK_LINE.search(result.stdout), output
    assert re.search(rf"^ +subscribers: {SUBSCRIBERS}\.0$", result.stdout, re.MULTILINE), output
    assert re.search(r"^ +change_frames: [1-9]", result.stdout, re.MULTILINE), output
    return time.monotonic() - started


@pytest.mark.e2e
@pytest.mark.slow
def test_short_soak_loses_nothing() -> None:
    run_soak()


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.postgres
def test_short_soak_loses_nothing_on_postgres() -> None:
    require_postgres()
    url = asyncio.run(create_postgres_database())
    try:
        run_soak("--database-url", url)
    finally:
        asyncio.run(drop_postgres_database(url))
