"""The Worker runner against the app in process: a 429 is waited out as its Retry-After says."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from orchestrator.app import create_app
from orchestrator.client import AsyncClient, Worker
from orchestrator.db.migrate import upgrade
from tests.support.settings import make_settings
from tests.support.users import ADMIN_PASSWORD


class _Watched(httpx.AsyncBaseTransport):
    """The app's transport, noting each claim's answer."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.claims: list[int] = []
        self.changed = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path == "/api/v1/jobs/claim":
            self.claims.append(response.status_code)
            self.changed.set()
        return response

    async def until(self, done: object) -> None:
        while not done():  # type: ignore[operator]
            self.changed.clear()
            await self.changed.wait()


async def test_a_rate_limited_worker_waits_as_retry_after_says(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'orchestrator.db'}"
    await asyncio.to_thread(upgrade, url)
    settings = make_settings(
        url, tmp_path / "data", rate_limit_enabled=True, rate_limit_workers="2/minute"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = _Watched(httpx.ASGITransport(app=app))
        async with AsyncClient("http://127.0.0.1", transport=transport) as client:
            await client.login("admin", ADMIN_PASSWORD)
            worker = Worker(client, ["q"], lambda job: None, wait=0)
            running = asyncio.create_task(worker.run(install_signal_handlers=False))
            try:
                await asyncio.wait_for(transport.until(lambda: 429 in transport.claims), 10)
                refused_at = len(transport.claims)
                # Retry-After is tens of seconds: no claim for a good while (a backoff of its
                # own would have tried again several times within this second).
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(
                        transport.until(lambda: len(transport.claims) > refused_at), 1.0
                    )
            finally:
                worker.stop()
                await asyncio.wait_for(running, 5)
    assert transport.claims[:2] == [204, 204]
    assert transport.claims[2:] == [429]
