"""A live server per backend for the trust tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
)
from tests.trust.live import Live, admin_token, start_server


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """One real server per backend for the whole module."""
    backend: str = request.param
    if backend == "postgres":
        require_postgres()
    tmp = tmp_path_factory.mktemp(f"live-{backend}")
    if backend == "postgres":
        url = asyncio.run(create_postgres_database())
    else:
        url = f"sqlite:///{tmp / 'data' / 'orchestrator.db'}"
    server = start_server(tmp, url)
    try:
        yield Live(server=server, backend=backend, database_url=url, token=admin_token(server.url))
    finally:
        server.stop()
        if backend == "postgres":
            asyncio.run(drop_postgres_database(url))
