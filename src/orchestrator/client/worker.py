"""`Worker`: claims jobs, keeps their leases alive, reports the outcome, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import os
import random
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import orjson

from orchestrator.client.calls import JobClaim, NextJobs, Reported
from orchestrator.client.context import JobContext, JobLogHandler, run_in_job, takes_context
from orchestrator.client.errors import (
    ApiError,
    AuthenticationError,
    PermissionDeniedError,
)
from orchestrator.client.http import AsyncClient

log = logging.getLogger(__name__)

# `handler(job)`, or `handler(job, context)` for a handler that reports progress or logs.
Handler = Callable[..., Any] | Callable[..., Awaitable[Any]]
Interruption = Literal["cancel", "lost", "shutdown"]
MAX_ERROR = 10_000
FIRST_BACKOFF = 0.2
MAX_BACKOFF = 10.0
MAX_BATCH = 100  # jobs per call, as the server takes them
# Running jobs are heartbeated at least this often, so that a cancellation reaches its
# handler within a second.
CANCEL_CHECK_SECONDS = 0.5
# A finished job's report waits at most this long for others to join it in one request
# (it goes at once when no other job is running, half the slots have a report waiting, or
# the worker stops): jobs finishing close together share a request, none is held long.
REPORT_LINGER_SECONDS = 0.002
PAST = {"complete": "succeeded", "fail": "failed", "release": "released"}


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


@dataclass(eq=False)
class _Running:
    """A job a handler is running: its claim, the handler's future, and the last heartbeat."""

    claim: JobClaim
    future: asyncio.Future[Any]
    is_async: bool
    beat_at: float
    context: JobContext
    interruption: Interruption | None = None


@dataclass(eq=False)
class _Report:
    """An outcome waiting to be sent: complete, fail or release, given up after `until`."""

    claim: JobClaim
    verb: Literal["complete", "fail", "release"]
    queued: float
    until: float
    result: Any = None
    error: str = ""
    retry: bool = True
    repeated: bool = False  # sent before, perhaps received
    context: JobContext | None = None  # its log lines go before it


class Worker:
    """Run `handler(job)` for jobs of `queues`, `concurrency` at a time.

    The handler gets the job as the API shows it (and, if it takes a second argument, a
    `JobContext` to report progress with) and returns a JSON-serialisable result;
    an exception fails the job (retried while attempts remain, unless it is `DoNotRetry`).
    Async handlers are cancelled when the job is cancelled or its lease is lost; a plain
    function runs in a thread and cannot be interrupted, so its late report is fenced off by
    the server (409) instead. Transient errors (no connection, 429, 5xx) are retried with
    backoff, honouring `Retry-After`; a refusal no retry can fix (401, 403) stops the worker,
    and `run()` raises `WorkerStopped`.

    A busy worker makes one request per job or fewer: the outcomes of the jobs that finished
    are reported together, and the same request claims as many jobs as slots are free. A
    report waits up to `report_linger` seconds for other running jobs to finish too, so that
    jobs finishing close together share a request. Running
    jobs are heartbeated together, every `heartbeat_seconds` (at most half a second by
    default, so that a cancellation reaches its handler within a second).

    `context.log(line)` appends to the job's log: lines are sent in batches of up to 100 as
    the heartbeats go, and all of them before the job's outcome. With `job_log_level`, every
    `logging` record of that level or above emitted while a handler runs (in its task or its
    thread) goes to its job's log too (a `JobLogHandler` on the root logger while `run()` runs).
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
        heartbeat_seconds: float | None = None,
        report_linger: float = REPORT_LINGER_SECONDS,
        job_log_level: int | None = None,
    ) -> None:
        if not 1 <= concurrency <= MAX_BATCH:
            raise ValueError(f"concurrency must be from 1 to {MAX_BATCH}")
        self.client = client
        self.queues = list(queues)
        self.handler = handler
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.wait = wait
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.shutdown_grace = shutdown_grace
        self.heartbeat_seconds = heartbeat_seconds or min(lease_seconds / 3, CANCEL_CHECK_SECONDS)
        self.report_linger = report_linger
        self.job_log_level = job_log_level
        self._log_sends: set[asyncio.Future[Any]] = set()
        self._is_async = inspect.iscoroutinefunction(handler)
        self._with_context = takes_context(handler)
        self._stopping = asyncio.Event()
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="job-handler")
        self._outage = _Outage()
        self._refused: ApiError | None = None
        self._running: dict[str, _Running] = {}
        self._reports: list[_Report] = []
        self._changed = asyncio.Event()  # a report to send, a claim came back, a stop
        self._claiming: asyncio.Future[Any] | None = None  # a request that waits for work
        self._hold_reports_until = 0.0  # after a failed report, the backoff's end
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
        self._changed.set()

    async def run(self, *, install_signal_handlers: bool = True) -> None:
        """Work until `stop()` (or SIGTERM/SIGINT), then return once every job is settled."""
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if install_signal_handlers else ()
        for sig in signals:
            loop.add_signal_handler(sig, self.stop)
        log.info("worker %s started on queues %s", self.name, ",".join(self.queues))
        beats = asyncio.ensure_future(self._heartbeats())
        job_logs = None
        if self.job_log_level is not None:
            job_logs = JobLogHandler(self.job_log_level, runner=self)
        if job_logs is not None:
            logging.getLogger().addHandler(job_logs)
        try:
            await self._dispatch()
        except BaseException:
            # Cancelled (or failed) rather than stopped: nothing of ours runs on.
            for job in self._running.values():
                if job.is_async:
                    job.future.cancel()
            raise
        finally:
            if job_logs is not None:
                logging.getLogger().removeHandler(job_logs)
            beats.cancel()
            for sending in self._log_sends:
                sending.cancel()
            try:
                await _ended(beats)
                for sending in list(self._log_sends):
                    await _ended(sending)
                await self._end_claim()
            finally:
                self._end_signals(signals)
        if self._refused is not None:
            raise WorkerStopped(_refusal(self._refused)) from self._refused
        log.info("worker %s stopped after %d jobs", self.name, self.processed)

    def _end_signals(self, signals: Sequence[signal.Signals]) -> None:
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.remove_signal_handler(sig)
        self._executor.shutdown(wait=False)

    def _refuse(self, exc: ApiError) -> None:
        """Stop at once: without its account the worker can neither claim nor report."""
        if self._refused is None:
            self._refused = exc
            self.shutdown_grace = 0
        self.stop()

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless the worker stops first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # ------------------------------------------------------------------ the main loop

    async def _dispatch(self) -> None:
        """Report what finished (claiming into the free slots on the way), claim when idle,
        and at a stop let the running jobs finish within the grace period."""
        loop = asyncio.get_running_loop()
        shutdown_at: float | None = None
        while True:
            self._changed.clear()
            if self._stopping.is_set():
                if shutdown_at is None:
                    shutdown_at = loop.time() + self.shutdown_grace
                    await self._end_claim()
                if loop.time() >= shutdown_at:
                    self._interrupt_all("shutdown")
            wake_at = shutdown_at
            if self._reports and self._refused is None:
                send_at = max(self._hold_reports_until, self._linger_until())
                if loop.time() >= send_at:
                    await self._send_reports()
                    continue
                wake_at = min(wake_at or math.inf, send_at)
            elif self._stopping.is_set():
                if all(job.interruption == "shutdown" for job in self._running.values()):
                    return
            elif self._claiming is None and self._free() > 0:
                self._claiming = asyncio.ensure_future(self._claim(self._free()))
            timeout = None if wake_at is None else max(0.0, wake_at - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    def _free(self) -> int:
        return self.concurrency - len(self._running)

    def _linger_until(self) -> float:
        """When the reports waiting go: `report_linger` after the first, or at once when no
        other job is running, half the slots have a report waiting, or the worker stops."""
        if (
            self._stopping.is_set()
            or len(self._reports) >= max(1, self.concurrency // 2)
            or all(job.interruption is not None for job in self._running.values())
        ):
            return 0.0
        return min(report.queued for report in self._reports) + self.report_linger

    async def _claim(self, count: int) -> None:
        """Claim up to `count` jobs, waiting for them; given up when the worker stops (closing
        the connection ends the server's wait too)."""
        try:
            claims = await self.client.claim_jobs(
                self.queues,
                max_jobs=count,
                lease_seconds=self.lease_seconds,
                worker=self.name,
                wait=self.wait,
            )
        except ApiError as exc:
            if not exc.transient:
                self._refuse(exc)
            else:
                await self._pause(self._outage.delay_after(exc))
        except httpx.TransportError as exc:
            await self._pause(self._outage.delay_after(exc))
        else:
            self._outage.over()
            for claimed in claims:
                self._start(claimed)
        finally:
            self._claiming = None
            self._changed.set()

    async def _end_claim(self) -> None:
        claiming, self._claiming = self._claiming, None
        if claiming is not None and not claiming.done():
            # A grant already on its way when the connection closes comes back to the queue
            # when its lease expires.
            claiming.cancel()
            await _ended(claiming)

    # --------------------------------------------------------------------- the jobs

    def _start(self, claimed: JobClaim) -> None:
        log.info("job %s claimed (token %d)", claimed.id, claimed.token)
        context = JobContext(claimed)
        context.runner = self
        context.client, context.loop = self.client, asyncio.get_running_loop()
        args = (claimed.job, context) if self._with_context else (claimed.job,)
        # The handler runs where `current_job()` is its context (for `JobLogHandler`).
        scope = run_in_job(context)
        loop = asyncio.get_running_loop()
        if self._is_async:
            running = _awaited(self.handler(*args))
            future: asyncio.Future[Any] = loop.create_task(running, context=scope)
        else:
            future = loop.run_in_executor(self._executor, scope.run, self.handler, *args)
            self._in_threads.add(future)
            future.add_done_callback(self._in_threads.discard)
        now = asyncio.get_running_loop().time()
        job = _Running(claimed, future, self._is_async, now, context)
        self._running[claimed.id] = job
        future.add_done_callback(lambda _f: self._finished(job))

    def _finished(self, job: _Running) -> None:
        """The handler returned or raised: queue the job's report (unless it was interrupted)."""
        if self._running.get(job.claim.id) is job:
            del self._running[job.claim.id]
        self._changed.set()
        if job.interruption in ("cancel", "shutdown") or job.future.cancelled():
            return  # reported when interrupted (or, once refused, never)
        if job.interruption == "lost":
            log.warning("job %s: finished after its lease was lost", job.claim.id)
        self.processed += 1
        error = job.future.exception()
        context = job.context
        if isinstance(error, DoNotRetry):
            self._report(job.claim, "fail", error=_describe(error), retry=False, context=context)
        elif error is not None:
            log.info("job %s failed: %s", job.claim.id, _describe(error))
            self._report(job.claim, "fail", error=_describe(error), retry=True, context=context)
        else:
            result = job.future.result()
            try:
                orjson.dumps(result)
            except TypeError as exc:
                error_text = f"the handler's result is not JSON: {exc}"
                self._report(job.claim, "fail", error=error_text, retry=False, context=context)
            else:
                self._report(job.claim, "complete", result=result, context=context)

    def _report(
        self, claimed: JobClaim, verb: Literal["complete", "fail", "release"], **fields: Any
    ) -> None:
        now = asyncio.get_running_loop().time()
        self._reports.append(_Report(claimed, verb, now, now + self.lease_seconds, **fields))
        self._changed.set()

    def _interrupt(self, job: _Running, why: Interruption) -> None:
        """Stop a job's handler (a plain function runs on: its report is fenced off)."""
        if job.interruption is not None:
            return
        job.interruption = why
        if why == "cancel":
            log.info("job %s cancelled by request", job.claim.id)
            self._report(job.claim, "fail", error="cancelled", retry=False, context=job.context)
        elif why == "shutdown" and self._refused is None:
            log.info("job %s released at shutdown", job.claim.id)
            self._report(job.claim, "release", context=job.context)
        if job.is_async:
            job.future.cancel()

    def _interrupt_all(self, why: Interruption) -> None:
        for job in list(self._running.values()):
            self._interrupt(job, why)

    # ------------------------------------------------------------------- the server

    async def _send_reports(self) -> None:
        """One request for every report waiting, with a claim for the free slots. When nothing
        else runs, that claim waits for work; the request then runs alongside, as a claim."""
        now = asyncio.get_running_loop().time()
        for gone in [r for r in self._reports if r.until < now]:
            log.error("job %s: %s not delivered before its lease ended", gone.claim.id, gone.verb)
        live = [r for r in self._reports if r.until >= now]
        sending, self._reports = live[:MAX_BATCH], live[MAX_BATCH:]
        if not sending:
            return
        # A job's log lines go before its outcome (after it, its lease no longer holds).
        for report in sending:
            if report.context is not None and report.context.has_logs:
                failed = await self._send_logs(report.claim, report.context)
                if failed is not None:
                    self._retry_reports(sending, failed)
                    return
        claim: NextJobs | None = None
        free = self._free()
        if not self._stopping.is_set() and self._claiming is None and free > 0:
            idle = not self._running and not self._reports
            claim = NextJobs(
                self.queues,
                free,
                lease_seconds=self.lease_seconds,
                worker=self.name,
                wait=self.wait if idle else 0,
            )
        if claim is not None and claim.wait > 0:
            self._claiming = asyncio.ensure_future(self._deliver(sending, claim))
        else:
            await self._deliver(sending, claim)

    async def _deliver(self, sending: list[_Report], claim: NextJobs | None) -> None:
        waiting = claim is not None and claim.wait > 0
        try:
            reported = await self.client.report(
                complete=[(r.claim, r.result) for r in sending if r.verb == "complete"],
                fail=[(r.claim, r.error, r.retry) for r in sending if r.verb == "fail"],
                release=[r.claim for r in sending if r.verb == "release"],
                claim=claim,
            )
        except asyncio.CancelledError:
            # Stopped while waiting for work: the reports most likely arrived, but say so
            # again (a repeat is refused harmlessly, and said quietly).
            for report in sending:
                report.repeated = True
            self._reports[:0] = sending
            raise
        except ApiError as exc:
            if not exc.transient:
                log.error("reports refused: %s", describe(exc))
                if isinstance(exc, AuthenticationError | PermissionDeniedError):
                    self._refuse(exc)
                return
            self._retry_reports(sending, exc)
            return
        except httpx.TransportError as exc:
            self._retry_reports(sending, exc)
            return
        finally:
            if waiting:
                self._claiming = None
                self._changed.set()
        self._outage.over()
        self._settle(sending, reported)

    def _retry_reports(self, sending: list[_Report], exc: Exception) -> None:
        """Send them again after the outage's backoff (or as `Retry-After` says)."""
        self._reports[:0] = sending
        log.warning("reports failed: %s; retrying", describe(exc))
        delay = self._outage.delay_after(exc)
        self._hold_reports_until = asyncio.get_running_loop().time() + delay

    def _settle(self, sending: list[_Report], reported: Reported) -> None:
        """Act on each report's outcome, and start the jobs claimed."""
        outcomes = {
            outcome["id"]: outcome
            for outcome in (*reported.complete, *reported.fail, *reported.release)
        }
        for sent in sending:
            outcome = outcomes[sent.claim.id]
            code = int(outcome["code"])
            if code == 200:
                log.info("job %s: %s", sent.claim.id, PAST.get(sent.verb, sent.verb))
                continue
            message = outcome["error"]["message"]
            if code == 422 and sent.verb == "complete":
                # The result itself was refused (too large, too deep): the job cannot succeed so.
                log.warning("job %s: result refused: %s", sent.claim.id, message)
                error = f"the handler's result was refused: {message}"
                self._report(sent.claim, "fail", error=error, retry=False)
            elif sent.repeated and code == 409:
                log.info("job %s: %s already reported", sent.claim.id, sent.verb)
            else:
                log.warning("job %s: %s refused (%d): %s", sent.claim.id, sent.verb, code, message)
        for claimed in reported.claims:
            self._start(claimed)

    async def _heartbeats(self) -> None:
        """Every so often, one heartbeat for the leases not heard of for `heartbeat_seconds`
        and the jobs whose handler told progress since; its answers say which jobs were
        cancelled and which leases were lost."""
        loop = asyncio.get_running_loop()
        interval = self.heartbeat_seconds
        while True:
            await asyncio.sleep(interval / 2)
            now = loop.time()
            if self._refused is None:
                for job in self._running.values():
                    if job.context.has_logs and not job.context.sending.locked():
                        self._send_logs_soon(job)
            due = [
                job
                for job in self._running.values()
                if job.interruption is None
                and (now - job.beat_at >= interval or job.context.has_progress)
            ][:MAX_BATCH]
            if not due or self._refused is not None:
                continue
            told = {job.claim.id: job.context.take_progress() for job in due}
            progress = {job_id: value for job_id, value in told.items() if value is not None}
            try:
                beats = await self.client.heartbeat_jobs(
                    [job.claim for job in due], lease_seconds=self.lease_seconds, progress=progress
                )
            except (ApiError, httpx.TransportError) as exc:
                for job in due:
                    if job.claim.id in progress:
                        job.context.give_back(progress[job.claim.id])
                if isinstance(exc, ApiError) and not exc.transient:
                    self._refuse(exc)
                    return
                log.warning("heartbeat failed: %s", describe(exc))
                continue
            for job, beat in zip(due, beats, strict=True):
                code = int(beat["code"])
                if code != 200:
                    log.warning("job %s: heartbeat refused (%d)", job.claim.id, code)
                    self._interrupt(job, "lost")
                elif beat["cancel_requested"]:
                    self._interrupt(job, "cancel")
                else:
                    job.beat_at = now

    # ------------------------------------------------------------------- job logs

    def _send_logs_soon(self, job: _Running) -> None:
        sending = asyncio.ensure_future(self._send_logs(job.claim, job.context))
        self._log_sends.add(sending)
        sending.add_done_callback(self._log_sends.discard)

    async def _send_logs(self, claimed: JobClaim, context: JobContext) -> Exception | None:
        """Send the job's waiting log lines, 100 a call, in order; the transient failure that
        stopped it (its lines wait for the next try), or None."""
        async with context.sending:
            while True:
                lines = context.take_logs(MAX_BATCH)
                if not lines:
                    return None
                try:
                    await self.client.append_job_logs(
                        claimed.id, claimed.token, lines, secret=claimed.secret
                    )
                except (ApiError, httpx.TransportError) as exc:
                    if transient(exc):
                        context.give_back_logs(lines)
                        log.warning("job %s: log lines not sent: %s", claimed.id, describe(exc))
                        return exc
                    if isinstance(exc, ApiError) and exc.status_code == 422:
                        log.warning("job %s: log lines refused: %s", claimed.id, describe(exc))
                        continue
                    # The lease is gone (or the account): the server refuses the rest too.
                    dropped = len(lines) + context.drop_logs()
                    log.warning(
                        "job %s: %d log lines refused: %s", claimed.id, dropped, describe(exc)
                    )
                    if isinstance(exc, AuthenticationError):
                        self._refuse(exc)
                    return None


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR]
