"""In-process apps on a fresh SQLite file, for tests that vary settings per test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI

from orchestrator.app import create_app
from orchestrator.db.migrate import upgrade
from orchestrator.services import Services
from tests.support.settings import make_settings


@asynccontextmanager
async def running_app(tmp_path: Path, **overrides: object) -> AsyncIterator[FastAPI]:
    """An app with its lifespan running, on SQLite (these checks do not depend on the backend)."""
    url = f"sqlite:///{tmp_path / 'orchestrator.db'}"
    await asyncio.to_thread(upgrade, url)
    app = create_app(make_settings(url, tmp_path / "data", **overrides))
    async with app.router.lifespan_context(app):
        yield app


def services_of(app: FastAPI) -> Services:
    services: Services = app.state.services
    return services


def client_for(app: FastAPI, client: tuple[str, int] = ("127.0.0.1", 50000)) -> httpx.AsyncClient:
    """A client that reaches `app` from the address `client`."""
    transport = httpx.ASGITransport(app=app, client=client)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")
