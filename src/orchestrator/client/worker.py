"""`Worker`: claims jobs, keeps their leases alive, reports the outcome, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import random
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import httpx

from orchestrator.client.calls import JobClaim
from orchestrator.client.errors import (
    ApiError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
)
from orchestrator.client.http import AsyncClient

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Any] | Callable[[dict[str, Any]], Awaitable[Any]]
Interruption = Literal["cancel", "lost", "shutdown"]
MAX_ERROR = 10_000
FIRST_BACKOFF = 0.2
MAX_BACKOFF = 10.0


class DoNotRetry(Exception):
    """Raise from a handler to fail the job at once, whatever attempts are left."""


class WorkerStopped(Exception):
    """The server refused the worker in a way no retry can fix (401, 403, a bad request)."""


def transient(exc: BaseException) -> bool:
    """A failure worth retrying later: no connection, a timeout, 429 or 5xx."""
    return isinstance(exc, httpx.TransportError) or (isinstance(exc, ApiError) and exc.transient)


def describe(exc: BaseException) -> str:
    """One line saying what went wrong with a call, without a traceback."""
    if isinstance(exc, ApiError):
        return f"{exc.status_code} {exc.message}"
    if isinstance(exc, httpx.ConnectError):
        return "no server answers (connection refused)"
    if isinstance(exc, httpx.TimeoutException):
        return "the server did not answer in time"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _ended(future: asyncio.Future[Any]) -> None:
    """Wait until `future` has ended, whatever its outcome.

    A cancellation of the caller itself goes through (suppressing `CancelledError` around an
    `await` would swallow it too, and a worker told to stop would go on claiming).
    """
    await asyncio.wait({future})
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not warn about it


def _refusal(exc: ApiError) -> str:
    if isinstance(exc, AuthenticationError):
        return f"the server no longer accepts this account ({exc.status_code} {exc.message})"
    if isinstance(exc, PermissionDeniedError):
        return (
            f"this account may not run jobs ({exc.status_code} {exc.message}): "
            "it needs the worker or admin role"
        )
    return f"the server refused the worker's request ({exc.status_code} {exc.message})"


class _Outage:
    """Backoff shared by every slot, and one log line when the server stops and starts answering."""

    def __init__(self) -> None:
        self._delay = FIRST_BACKOFF
        self._since: float | None = None

    def delay_after(self, exc: BaseException) -> float:
        """Seconds to wait before the next try: `Retry-After` when given, else jittered backoff."""
        loop = asyncio.get_running_loop()
        retry_after = exc.retry_after if isinstance(exc, ApiError) else None
        if self._since is None:
            self._since = loop.time()
            how = "with backoff" if retry_after is None else "when the server's Retry-After says"
            log.warning("server unavailable: %s; retrying %s", describe(exc), how)
        if retry_after is not None:
            return retry_after
        delay = random.uniform(self._delay / 2, self._delay)  # noqa: S311 (spreads retries)
        self._delay = min(MAX_BACKOFF, self._delay * 2)
        return delay

    def over(self) -> None:
        if self._since is not None:
            elapsed = asyncio.get_running_loop().time() - self._since
            log.info("server answers again after %.1fs", elapsed)
        self._since = None
        self._delay = FIRST_BACKOFF


class Worker:
    """Run `handler(job)` for jobs of `queues`, `concurrency` at a time.

    The handler gets the job as the API shows it and returns a JSON-serialisable result;
    an exception fails the job (retried while attempts remain, unless it is `DoNotRetry`).
    Async handlers are cancelled when the job is cancelled or its lease is lost; a plain
    function runs in a thread and cannot be interrupted, so its late report is fenced off by
    the server (409) instead. Transient errors (no connection, 429, 5xx) are retried with
    backoff, honouring `Retry-After`; a refusal no retry can fix (401, 403) stops the worker,
    and `run()` raises `WorkerStopped`.
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
        self._outage = _Outage()
        self._refused: ApiError | None = None
        self._in_threads: set[asyncio.Future[Any]] = set()
        self.processed = 0

    @property
    def handlers_running(self) -> int:
        """Plain-function handlers still running in their threads (they cannot be interrupted)."""
        return len(self._in_threads)

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
        if self._refused is not None:
            raise WorkerStopped(_refusal(self._refused)) from self._refused
        log.info("worker %s stopped after %d jobs", self.name, self.processed)

    def _refuse(self, exc: ApiError) -> None:
        """Stop at once: without its account the worker can neither claim nor report."""
        if self._refused is None:
            self._refused = exc
            self.shutdown_grace = 0
        self._stopping.set()

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless the worker stops first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _slot(self) -> None:
        while not self._stopping.is_set():
            try:
                claimed = await self._claim()
            except ApiError as exc:
                if not exc.transient:
                    self._refuse(exc)
                    return
                await self._pause(self._outage.delay_after(exc))
                continue
            except httpx.TransportError as exc:
                await self._pause(self._outage.delay_after(exc))
                continue
            self._outage.over()
            if claimed is not None:
                await self._work(claimed)

    async def _claim(self) -> JobClaim | None:
        """One claim, given up when the worker stops (the server then stops waiting too)."""
        claiming = asyncio.ensure_future(
            self.client.claim(
                self.queues, lease_seconds=self.lease_seconds, worker=self.name, wait=self.wait
            )
        )
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({claiming, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not claiming.done():
            # Closing the connection ends the server's wait for work: it grants nothing more
            # to a claim whose client has gone (a grant already on its way would come back
            # when its lease expires).
            claiming.cancel()
            await _ended(claiming)
            return None
        return claiming.result()

    def _start(self, job: dict[str, Any]) -> asyncio.Future[Any]:
        if inspect.iscoroutinefunction(self.handler):
            return asyncio.ensure_future(self.handler(job))
        running = asyncio.get_running_loop().run_in_executor(self._executor, self.handler, job)
        self._in_threads.add(running)
        running.add_done_callback(self._in_threads.discard)
        return running

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
                await _ended(watch)
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
                if self._refused is None:
                    log.info("job %s released at shutdown", job_id)
                    await self._report(claimed, "release")
            else:
                log.warning("job %s: lease lost (409 on heartbeat); result will be refused", job_id)
            if interruption == "shutdown" and not is_async:
                return  # the thread may run on; the process is exiting
            await _ended(running)
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
                await self._pause(interval)
                if self._stopping.is_set():
                    continue
            try:
                beat = await self.client.heartbeat(
                    claimed.id, claimed.token, lease_seconds=self.lease_seconds
                )
            except (ConflictError, NotFoundError) as exc:
                log.warning("job %s: heartbeat refused (%d)", claimed.id, exc.status_code)
                return "lost"
            except ApiError as exc:
                if not exc.transient:
                    self._refuse(exc)
                    return "shutdown"
                log.warning("job %s: heartbeat failed: %s", claimed.id, describe(exc))
                continue
            except httpx.TransportError as exc:
                log.warning("job %s: heartbeat failed: %s", claimed.id, describe(exc))
                continue
            if beat.get("cancel_requested"):
                return "cancel"

    async def _report(self, claimed: JobClaim, verb: str, **fields: Any) -> None:
        """complete / fail / release, retried on transient errors until the lease would end."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.lease_seconds
        delay = FIRST_BACKOFF
        while True:
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
                if isinstance(exc, ApiError) and exc.status_code == 422 and verb == "complete":
                    # The result itself was refused (too large): the job cannot succeed so.
                    log.warning("job %s: result refused: %s", claimed.id, exc.message)
                    error = f"the handler's result was refused: {exc.message}"
                    await self._report(claimed, "fail", error=error, retry=False)
                    return
                if isinstance(exc, ApiError) and not exc.transient:
                    log.error("job %s: %s failed: %s", claimed.id, verb, describe(exc))
                    if isinstance(exc, AuthenticationError | PermissionDeniedError):
                        self._refuse(exc)
                    return
                wait = exc.retry_after if isinstance(exc, ApiError) else None
                wait = delay if wait is None else wait
                if loop.time() + wait > give_up_at:
                    log.error("job %s: %s failed: %s", claimed.id, verb, describe(exc))
                    return
                log.warning("job %s: %s failed: %s; retrying", claimed.id, verb, describe(exc))
                await asyncio.sleep(wait)
                delay = min(MAX_BACKOFF, delay * 2)
            else:
                log.info("job %s: %s", claimed.id, {"complete": "succeeded"}.get(verb, verb))
                return


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR]
