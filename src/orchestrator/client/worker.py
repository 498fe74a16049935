"""`Worker`: claims jobs, keeps their leases alive, reports the outcome, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import httpx

from orchestrator.client.calls import JobClaim
from orchestrator.client.errors import ApiError, ConflictError, NotFoundError
from orchestrator.client.http import AsyncClient

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Any] | Callable[[dict[str, Any]], Awaitable[Any]]
Interruption = Literal["cancel", "lost", "shutdown"]
MAX_ERROR = 10_000
REPORT_TRIES = 5


class DoNotRetry(Exception):
    """Raise from a handler to fail the job at once, whatever attempts are left."""


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TransportError) or (
        isinstance(exc, ApiError) and (exc.status_code >= 500 or exc.status_code == 429)
    )


class Worker:
    """Run `handler(job)` for jobs of `queues`, `concurrency` at a time.

    The handler gets the job as the API shows it and returns a JSON-serialisable result;
    an exception fails the job (retried while attempts remain, unless it is `DoNotRetry`).
    Async handlers are cancelled when the job is cancelled or its lease is lost; a plain
    function runs in a thread and cannot be interrupted, so its late report is fenced off by
    the server (409) instead.
    """

    def __init__(
        self,
        client: AsyncClient,
        queues: Sequence[str],
        handler: Handler,
        *,
        concurrency: int = 1,
        lease_seconds: float = 30,
        wait: float = 10,
        name: str | None = None,
        shutdown_grace: float = 30,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.client = client
        self.queues = list(queues)
        self.handler = handler
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.wait = wait
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.shutdown_grace = shutdown_grace
        self._stopping = asyncio.Event()
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="job-handler")
        self.processed = 0

    def stop(self) -> None:
        """Stop claiming; running jobs get `shutdown_grace` seconds, then are released."""
        if not self._stopping.is_set():
            log.info("worker %s stopping", self.name)
        self._stopping.set()

    async def run(self, *, install_signal_handlers: bool = True) -> None:
        """Work until `stop()` (or SIGTERM/SIGINT), then return once every job is settled."""
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if install_signal_handlers else ()
        for sig in signals:
            loop.add_signal_handler(sig, self.stop)
        log.info("worker %s started on queues %s", self.name, ",".join(self.queues))
        try:
            await asyncio.gather(*(self._slot() for _ in range(self.concurrency)))
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            self._executor.shutdown(wait=False)
        log.info("worker %s stopped after %d jobs", self.name, self.processed)

    async def _slot(self) -> None:
        backoff = 0.2
        while not self._stopping.is_set():
            try:
                # Never cancelled half-way: a claim the server granted must not go unseen.
                claimed = await self.client.claim(
                    self.queues, lease_seconds=self.lease_seconds, worker=self.name, wait=self.wait
                )
            except (ApiError, httpx.TransportError) as exc:
                log.warning("claim failed: %s; retrying in %.1fs", exc, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(10.0, backoff * 2)
                continue
            backoff = 0.2
            if claimed is not None:
                await self._work(claimed)

    def _start(self, job: dict[str, Any]) -> asyncio.Future[Any]:
        if inspect.iscoroutinefunction(self.handler):
            return asyncio.ensure_future(self.handler(job))
        return asyncio.get_running_loop().run_in_executor(self._executor, self.handler, job)

    async def _work(self, claimed: JobClaim) -> None:
        job_id = claimed.id
        log.info("job %s claimed (token %d)", job_id, claimed.token)
        running = self._start(claimed.job)
        watch = asyncio.ensure_future(self._watch(claimed))
        try:
            await asyncio.wait({running, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not watch.done():
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch
        interruption: Interruption | None = None
        if not running.done() and not watch.cancelled():
            interruption = watch.result()
            is_async = inspect.iscoroutinefunction(self.handler)
            if is_async:
                running.cancel()
            if interruption == "cancel":
                log.info("job %s cancelled by request", job_id)
                await self._report(claimed, "fail", error="cancelled", retry=False)
            elif interruption == "shutdown":
                log.info("job %s released at shutdown", job_id)
                await self._report(claimed, "release")
            else:
                log.warning("job %s: lease lost (409 on heartbeat); result will be refused", job_id)
            if interruption == "shutdown" and not is_async:
                return  # the thread may run on; the process is exiting
            with contextlib.suppress(BaseException):
                await running
            if is_async or interruption == "cancel":
                return
        self.processed += 1
        try:
            result = running.result()
        except DoNotRetry as exc:
            await self._report(claimed, "fail", error=_describe(exc), retry=False)
        except Exception as exc:
            log.info("job %s failed: %s", job_id, _describe(exc))
            await self._report(claimed, "fail", error=_describe(exc), retry=True)
        else:
            try:
                json.dumps(result)
            except (TypeError, ValueError) as exc:
                error = f"the handler's result is not JSON: {exc}"
                await self._report(claimed, "fail", error=error, retry=False)
                return
            await self._report(claimed, "complete", result=result)

    async def _watch(self, claimed: JobClaim) -> Interruption:
        """Heartbeat until the job is cancelled, the lease is lost or the grace period ends."""
        interval = max(0.1, self.lease_seconds / 3)
        loop = asyncio.get_running_loop()
        shutdown_at: float | None = None
        while True:
            if self._stopping.is_set():
                if shutdown_at is None:
                    shutdown_at = loop.time() + self.shutdown_grace
                remaining = shutdown_at - loop.time()
                if remaining <= 0:
                    return "shutdown"
                await asyncio.sleep(min(interval, remaining))
                if loop.time() >= shutdown_at:
                    return "shutdown"
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), interval)
                if self._stopping.is_set():
                    continue
            try:
                beat = await self.client.heartbeat(
                    claimed.id, claimed.token, lease_seconds=self.lease_seconds
                )
            except (ConflictError, NotFoundError) as exc:
                log.warning("job %s: heartbeat refused (%d)", claimed.id, exc.status_code)
                return "lost"
            except (ApiError, httpx.TransportError) as exc:
                log.warning("job %s: heartbeat failed: %s", claimed.id, exc)
                continue
            if beat.get("cancel_requested"):
                return "cancel"

    async def _report(self, claimed: JobClaim, verb: str, **fields: Any) -> None:
        """complete / fail / release, retried on transient errors; a 409 is logged, not raised."""
        delay = 0.2
        for attempt in range(REPORT_TRIES):
            try:
                if verb == "complete":
                    await self.client.complete(claimed.id, claimed.token, fields["result"])
                elif verb == "fail":
                    await self.client.fail(
                        claimed.id, claimed.token, fields["error"], retry=fields["retry"]
                    )
                else:
                    await self.client.release(claimed.id, claimed.token)
            except ConflictError as exc:
                log.warning("job %s: %s refused (409): %s", claimed.id, verb, exc.message)
                return
            except (ApiError, httpx.TransportError) as exc:
                if not _transient(exc) or attempt == REPORT_TRIES - 1:
                    log.error("job %s: %s failed: %s", claimed.id, verb, exc)
                    return
                await asyncio.sleep(delay)
                delay *= 2
            else:
                log.info("job %s: %s", claimed.id, {"complete": "succeeded"}.get(verb, verb))
                return


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR]
