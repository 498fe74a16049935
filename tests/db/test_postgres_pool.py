"""A fresh process on PostgreSQL meets its first burst of requests with its pool already open."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from orchestrator.db.migrate import upgrade
from tests.changes.support import mint_token, server_env
from tests.netproxy import NetProxy
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
)
from tests.support.servers import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@pytest.fixture
def postgres() -> None:
    require_postgres()


@pytest.mark.usefixtures("postgres")
async def test_a_fresh_process_answers_a_burst_without_503(tmp_path: Path) -> None:
    url = await create_postgres_database()
    try:
        await asyncio.to_thread(upgrade, url)
        target = urlsplit(url)
        assert target.hostname is not None
        assert target.port is not None
        async with NetProxy(target.hostname, target.port) as network:
            proxied = url.replace(
                f"@{target.hostname}:{target.port}/", f"@127.0.0.1:{network.port}/"
            )
            server = ServerProcess(
                # The production database timeout, shorter than a new connection takes below.
                env=server_env(tmp_path / "data", proxied, ORCH_DB_TIMEOUT_SECONDS="1.5"),
                log_path=tmp_path / "server.log",
            )
            await asyncio.to_thread(server.start, 120)
            try:
                # From now on a new connection takes longer than a request may wait for one
                # (a server far away, or busy): only connections opened at start can serve.
                network.connect_delay = 3.0
                headers = {"Authorization": f"Bearer {mint_token('admin')}"}
                async with httpx.AsyncClient(
                    base_url=server.url, timeout=15, limits=httpx.Limits(max_connections=32)
                ) as client:
                    answers = await asyncio.gather(
                        *(client.get("/api/v1/jobs", headers=headers) for _ in range(32))
                    )
                statuses = Counter(answer.status_code for answer in answers)
                assert statuses == {200: 32}, statuses
            finally:
                network.connect_delay = 0.0
                await asyncio.to_thread(server.stop)
    finally:
        await drop_postgres_database(url)
