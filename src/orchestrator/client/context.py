"""`JobContext`: what a handler may do while it runs its job, handed to handlers that take a
second argument (`def handle(job, context)`); `JobLogHandler` routes `logging` to it."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orchestrator.client.calls import JobClaim
from orchestrator.client.errors import NotFoundError

if TYPE_CHECKING:
    from orchestrator.client.http import AsyncClient

MAX_PROGRESS_MESSAGE = 1_000
MAX_LOG_LINE_BYTES = 4096
# Lines waiting to be sent, per job: a job keeps its last 10,000 anyway, so older ones waiting
# behind them would be pruned as soon as they arrived.
MAX_WAITING_LINES = 10_000

_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "orchestrator_job", default=None
)


def current_job() -> JobContext | None:
    """The context of the job whose handler is running here (in its task or its thread), if any."""
    return _current.get()


def _log_lines(text: str) -> list[str]:
    """`text` as log lines the server takes: one per line of it, each at most 4,096 bytes of
    UTF-8 (a longer one in pieces), NUL and lone surrogates replaced."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    lines = text.splitlines() or [""]
    pieces: list[str] = []
    for line in lines:
        data = line.encode("utf-8", "replace")  # a lone surrogate becomes "?"
        while len(data) > MAX_LOG_LINE_BYTES:
            cut = MAX_LOG_LINE_BYTES
            while data[cut] & 0xC0 == 0x80:  # not inside a character
                cut -= 1
            pieces.append(data[:cut].decode())
            data = data[cut:]
        pieces.append(data.decode())
    return pieces


class JobContext:
    """The job being run, and its progress as the handler last told it.

    The worker sends the progress with its next heartbeat (every half second at most, in the
    same request as every other running job's): calling `progress` costs no request of its
    own, and only the latest value is sent.
    """

    def __init__(self, claim: JobClaim) -> None:
        self._claim = claim
        self._told: tuple[float | None, str | None] | None = None
        self._lines: deque[str] = deque()
        self._lines_lock = threading.Lock()  # `log` may be called from a handler's threads
        self.dropped_lines = 0
        self.sending = asyncio.Lock()  # one batch of lines in flight at a time, in order
        self.runner: object | None = None  # the worker running the job
        # The worker's client and event loop, for `parents()`.
        self.client: AsyncClient | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def job(self) -> dict[str, Any]:
        """The job as the claim showed it."""
        return self._claim.job

    @property
    def job_id(self) -> str:
        return self._claim.id

    # ------------------------------------------------------------------- parents

    @property
    def parent_ids(self) -> list[str]:
        """The jobs this one waited for (its `depends_on`)."""
        return list(self._claim.job.get("depends_on") or [])

    async def parents(self) -> dict[str, dict[str, Any]]:
        """Each parent as the API shows it now (its `result` among the rest), by id in
        `depends_on` order; a parent deleted since is left out. In an async handler."""
        client = self.client
        if client is None:
            raise RuntimeError("parents() needs the worker's client (the Worker gives it)")

        async def read(job_id: str) -> dict[str, Any] | None:
            try:
                return await client.get_job(job_id)
            except NotFoundError:
                return None

        ids = self.parent_ids
        jobs = await asyncio.gather(*(read(job_id) for job_id in ids))
        return {job_id: job for job_id, job in zip(ids, jobs, strict=True) if job is not None}

    def parents_from_thread(self) -> dict[str, dict[str, Any]]:
        """`parents()` for a plain-function handler, which runs in a thread of the worker."""
        if self.loop is None:
            raise RuntimeError("parents_from_thread() needs the worker's event loop")
        return asyncio.run_coroutine_threadsafe(self.parents(), self.loop).result()

    def progress(self, fraction: float | None, message: str | None = None) -> None:
        """Say how far the job is (0 to 1; None keeps the last) and what it is doing."""
        if fraction is not None and (
            isinstance(fraction, bool) or not math.isfinite(fraction) or not 0 <= fraction <= 1
        ):
            raise ValueError("progress must be a number from 0 to 1")
        if message is not None and len(message) > MAX_PROGRESS_MESSAGE:
            raise ValueError(f"a progress message has at most {MAX_PROGRESS_MESSAGE} characters")
        self._told = (fraction, message)  # one assignment: safe from a handler's thread

    @property
    def has_progress(self) -> bool:
        return self._told is not None

    def take_progress(self) -> tuple[float | None, str | None] | None:
        """The progress told since the last call, if any (for the worker's heartbeat)."""
        told, self._told = self._told, None
        return told

    def give_back(self, told: tuple[float | None, str | None]) -> None:
        """A heartbeat that did not get through: send `told` with the next one, unless the
        handler told something newer meanwhile."""
        if self._told is None:
            self._told = told

    # ---------------------------------------------------------------------- logs

    def log(self, line: str) -> None:
        """Append `line` to the job's log (a text of several lines: one line each; a line over
        4,096 bytes: in pieces). The worker sends lines in batches while the job runs, and
        every line logged before the handler returns before the job's outcome."""
        pieces = _log_lines(str(line))
        with self._lines_lock:
            self._lines.extend(pieces)
            over = len(self._lines) - MAX_WAITING_LINES
            for _ in range(max(0, over)):
                self._lines.popleft()
            self.dropped_lines += max(0, over)

    @property
    def has_logs(self) -> bool:
        return bool(self._lines)

    def take_logs(self, limit: int) -> list[str]:
        """Up to `limit` of the oldest lines waiting (for the worker to send)."""
        with self._lines_lock:
            count = min(limit, len(self._lines))
            return [self._lines.popleft() for _ in range(count)]

    def give_back_logs(self, lines: list[str]) -> None:
        """Lines that did not get through: first in line again."""
        with self._lines_lock:
            self._lines.extendleft(reversed(lines))

    def drop_logs(self) -> int:
        """Forget the lines waiting (the lease is gone: the server would refuse them)."""
        with self._lines_lock:
            count = len(self._lines)
            self._lines.clear()
            return count


def run_in_job(context: JobContext) -> contextvars.Context:
    """A copy of the current `contextvars` context in which `current_job()` is `context`."""
    copied = contextvars.copy_context()
    copied.run(_current.set, context)
    return copied


class JobLogHandler(logging.Handler):
    """Sends each record emitted while a job's handler runs (in its task or its thread) to
    that job's log, formatted as `LEVEL logger: message` (and the traceback, if any); with
    `runner`, only the records of the jobs that worker runs."""

    def __init__(self, level: int = logging.NOTSET, *, runner: object | None = None) -> None:
        super().__init__(level)
        self.runner = runner
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        context = _current.get()
        if context is None or (self.runner is not None and context.runner is not self.runner):
            return
        try:
            context.log(self.format(record))
        except Exception:  # logging must never raise
            self.handleError(record)


def takes_context(handler: Callable[..., Any]) -> bool:
    """Whether `handler` takes a second positional argument (the context)."""
    try:
        parameters = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = 0
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return True
        if parameter.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            positional += 1
    return positional >= 2
