"""One real server (SQLite) shared by the real-time tests of this package."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from orchestrator.db import open_database
from tests.changes.support import Stack, server_env, sqlite_url
from tests.support.servers import ServerProcess


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("realtime")
    proc = ServerProcess(
        env=server_env(
            root / "data",
            ORCH_WS_MAX_CONNECTIONS_PER_USER="3",
            ORCH_WS_MAX_MESSAGES_PER_SECOND="10",
            ORCH_WS_SEND_QUEUE_FRAMES="256",
        ),
        log_path=root / "server.log",
    ).start(timeout=120)
    yield proc
    proc.stop()
    unexpected = [
        line
        for line in proc.logs().splitlines()
        if "Traceback" in line and "fault injected by a test" not in line
    ]
    assert unexpected == []


@pytest.fixture
async def stack(server: ServerProcess) -> AsyncIterator[Stack]:
    data_dir = Path(server.env["ORCH_DATA_DIR"])
    db = open_database(sqlite_url(data_dir), timeout=5)
    try:
        yield Stack(database_url=sqlite_url(data_dir), servers=[server], db=db)
    finally:
        await db.close()
