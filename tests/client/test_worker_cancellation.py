"""The Worker runner: cancelling `run()` ends it, even while it waits for a call to wind down."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from orchestrator.app import create_app
from orchestrator.client import AsyncClient, Worker
from orchestrator.db.migrate import upgrade
from tests.support.settings import make_settings
from tests.support.users import ADMIN_PASSWORD


class _SlowHeartbeats(httpx.AsyncBaseTransport):
    """The app's transport, where a heartbeat hangs and, once cancelled, takes its time to
    close (as a request does on a slow network) until the test lets it."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.heartbeat_sent = asyncio.Event()
        self.winding_down = asyncio.Event()
        self.release = asyncio.Event()
        self.closed = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/heartbeat"):
            return await self.inner.handle_async_request(request)
        self.heartbeat_sent.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.winding_down.set()
            await self.release.wait()
            raise
        finally:
            self.closed.set()
        raise AssertionError("unreachable")


async def test_a_worker_cancelled_while_a_heartbeat_winds_down_stops(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'orchestrator.db'}"
    await asyncio.to_thread(upgrade, url)
    app = create_app(make_settings(url, tmp_path / "data"))
    async with app.router.lifespan_context(app):
        transport = _SlowHeartbeats(httpx.ASGITransport(app=app))
        async with AsyncClient("http://127.0.0.1", transport=transport) as client:
            await client.login("admin", ADMIN_PASSWORD)
            created = await client.create_job("one", queue="q")

            async def handler(job: object) -> str:
                await transport.heartbeat_sent.wait()  # ends while its lease is being renewed
                return "done"

            # Waiting claims: a worker that went on after its cancellation would wait for work.
            worker = Worker(client, ["q"], handler, lease_seconds=1, wait=5)
            running = asyncio.create_task(worker.run(install_signal_handlers=False))
            try:
                await asyncio.wait_for(transport.heartbeat_sent.wait(), 10)

                async def reported() -> bool:
                    return bool((await client.get_job(created["id"]))["status"] == "succeeded")

                # Reported while the heartbeat still hangs (no event to wait for: poll the API).
                while not await reported():  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                worker.stop()  # the stop cancels the hanging heartbeat and waits for it to end
                await asyncio.wait_for(transport.winding_down.wait(), 10)
                running.cancel()  # a shutdown cancels the worker while it waits for the beat
                await asyncio.wait({running}, timeout=10)
                ended = running.done()
            finally:
                transport.release.set()
                worker.stop()
                await asyncio.wait_for(transport.closed.wait(), 10)
                await asyncio.wait({running}, timeout=10)
    assert ended, "run() went on after its cancellation"
    assert running.cancelled()
