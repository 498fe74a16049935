"""Schemathesis against a live server, on SQLite and PostgreSQL: zero failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.trust.fuzz import run_schemathesis
from tests.trust.live import start_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXAMPLES = 200


@pytest.mark.timeout(1800)
async def test_schemathesis_finds_nothing(backend: str, tmp_path: Path) -> None:
    url = await create_postgres_database() if backend == "postgres" else None
    try:
        server = start_server(tmp_path, url)
        try:
            result = run_schemathesis(
                server.url, examples=EXAMPLES, seed=6, report_dir=tmp_path / "report"
            )
        finally:
            server.stop()
        assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-3000:]
    finally:
        if url is not None:
            await drop_postgres_database(url)
