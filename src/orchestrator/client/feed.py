"""`subscribe()`: the change feed over the WebSocket, resumed with `since` after every drop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

log = logging.getLogger(__name__)

TokenSource = Callable[[bool], Awaitable[str | None]]
POLICY_VIOLATION = 1008
MAX_BACKOFF = 5.0


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
