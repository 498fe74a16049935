"""`subscribe()`: the change feed over the WebSocket, resumed with `since` after every drop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

log = logging.getLogger(__name__)

TokenSource = Callable[[bool], Awaitable[str | None]]
POLICY_VIOLATION = 1008
MAX_BACKOFF = 5.0
CLOSE_TIMEOUT = 5.0


class FeedAuthError(Exception):
    """The server refused the credentials even after logging in again."""


async def subscribe(
    ws_url: str,
    token: TokenSource,
    *,
    collections: Sequence[str],
    since: int | None,
) -> AsyncIterator[dict[str, Any]]:
    """Yield change frames in revision order; reconnect and resume from the last one seen."""
    last = since
    backoff = 0.1
    refresh = False
    refused = 0
    while True:
        bearer = await token(refresh)
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        try:
            async with connect(ws_url, additional_headers=headers, open_timeout=10) as ws:
                command: dict[str, Any] = {"type": "subscribe", "collections": list(collections)}
                if last is not None:
                    command["since"] = last
                await ws.send(orjson.dumps(command).decode())
                async for raw in ws:
                    frame = orjson.loads(raw)
                    kind = frame.get("type")
                    if kind == "subscribed":
                        refresh, refused, backoff = False, 0, 0.1
                        if last is None:
                            last = int(frame["revision"])
                    elif kind == "change":
                        revision = int(frame["revision"])
                        if last is not None and revision <= last:
                            continue  # already seen before a reconnect
                        last = revision
                        yield frame
                    elif kind == "resync_required":
                        last = int(frame["revision"])
                        yield frame
        except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError) as exc:
            auth = isinstance(exc, InvalidStatus) and exc.response.status_code in (401, 403)
            closed = isinstance(exc, ConnectionClosed) and exc.rcvd is not None
            if auth or (closed and exc.rcvd.code == POLICY_VIOLATION):  # type: ignore[union-attr]
                refused += 1
                if refused > 2:
                    raise FeedAuthError("the server refused the token") from exc
                refresh = True
            log.info("change feed disconnected (%s); resuming after revision %s", exc, last)
        await asyncio.sleep(backoff)
        backoff = min(MAX_BACKOFF, backoff * 2)


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


_END = object()


class Subscription(Iterator[dict[str, Any]]):
    """`subscribe()` as a blocking iterator: a thread of its own follows the WebSocket.

    Frames wait in a bounded buffer; when the reader falls behind, the thread stops reading the
    socket, the server drops the connection (1013) and the feed resumes where it stopped.
    """

    def __init__(
        self,
        ws_url: str,
        token: TokenSource,
        *,
        collections: Sequence[str],
        since: int | None,
        buffer: int = 1000,
    ) -> None:
        self._frames: queue.Queue[object] = queue.Queue(buffer)
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._done = False
        feed = subscribe(ws_url, token, collections=collections, since=since)
        self._thread = threading.Thread(
            target=self._run, args=(feed,), name="orchestrator-feed", daemon=True
        )
        self._thread.start()

    def _run(self, feed: AsyncIterator[dict[str, Any]]) -> None:
        async def pump() -> None:
            try:
                async for frame in feed:
                    await self._put(frame)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._put(_Failed(exc))

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            self._started.set()
            await pump()

        try:
            asyncio.run(main())
        except asyncio.CancelledError:
            pass
        finally:
            self._started.set()
            self._frames.put(_END)

    async def _put(self, item: object) -> None:
        try:
            self._frames.put_nowait(item)
        except queue.Full:
            await asyncio.to_thread(self._frames.put, item)

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._done:
            raise StopIteration
        item = self._frames.get()
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, _Failed):
            self.close()
            raise item.error
        frame: dict[str, Any] = item  # type: ignore[assignment]
        return frame

    def close(self) -> None:
        """Stop following the feed; the iterator ends."""
        self._done = True
        self._started.wait()
        if self._loop is not None and self._task is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in the meantime
                self._loop.call_soon_threadsafe(self._task.cancel)
        deadline = time.monotonic() + CLOSE_TIMEOUT
        while self._thread.is_alive() and time.monotonic() < deadline:
            # make room, so that a thread waiting to hand over a frame sees the cancel
            with contextlib.suppress(queue.Empty):
                self._frames.get(timeout=0.05)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A loop left with `break` drops the iterator: close the socket with it.
        if not self._done and not sys.is_finalizing():
            self.close()
