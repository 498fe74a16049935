"""`/ws`: the contract's authenticated echo socket, carrying the change feed's commands."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, WebSocket
from starlette.types import Scope
from starlette.websockets import WebSocketDisconnect, WebSocketState

from orchestrator.auth.deps import (
    Principal,
    authenticate_websocket,
    presented_token,
    recheck,
)
from orchestrator.auth.tokens import chosen_subprotocol
from orchestrator.background import cancel_and_wait
from orchestrator.changes.hub import (
    ADMINS_ONLY,
    DEFAULT_SUBSCRIPTION,
    MAX_REVISION,
    SUBSCRIBABLE,
    DirectWrite,
    Hub,
    Outbox,
    ReplayInterrupted,
    ResyncRequired,
    Session,
    Subscriber,
    frame,
    one_job,
    watch_session,
)
from orchestrator.db import DatabaseUnavailable
from orchestrator.errors import Unauthorized
from orchestrator.http.protocol import DIRECT_FRAMES
from orchestrator.services import Services, services_of
from orchestrator.text import MAX_JSON_DEPTH, json_depth_exceeds
from orchestrator.timestamps import iso, utcnow

log = structlog.get_logger(__name__)
router = APIRouter()

POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013
# How long a client that stopped reading gets to take its close frame.
CLOSE_GRACE_SECONDS = 15.0
COMMANDS = frozenset({"subscribe", "unsubscribe", "ping"})


class Close(Exception):
    """End the connection with this close code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class CommandError(Exception):
    """A command the client got wrong: answered with an error frame, the socket stays open."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def error_frame(code: str, message: str) -> str:
    return frame({"type": "error", "code": code, "message": message})


def _collections(value: object, *, default: tuple[str, ...]) -> list[str]:
    if value is None:
        return list(default)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise CommandError("invalid_command", "collections must be a non-empty list of names")
    unknown = [v for v in value if v not in SUBSCRIBABLE]
    if unknown:
        raise CommandError(
            "invalid_command",
            f"unknown collection {unknown[0]!r}; one of {', '.join(SUBSCRIBABLE)}",
        )
    return list(dict.fromkeys(value))


def _since(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REVISION:
        raise CommandError(
            "invalid_command", f"since must be a revision (an integer 0..{MAX_REVISION})"
        )
    return value


def direct_writer(scope: Scope) -> DirectWrite | None:
    """The server's direct frame writer for this connection, when it offers one (ours does:
    `QuietWebSocketProtocol`); None under any other server."""
    offered = scope.get("extensions", {}).get(DIRECT_FRAMES)
    write = offered.get("write") if isinstance(offered, dict) else None
    return write if callable(write) else None


class MessageRate:
    """A token bucket: `rate` messages a second, in bursts of up to `rate`."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.updated = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Connection:
    """One accepted, authenticated socket: a reader, a writer and the reasons to close."""

    def __init__(
        self,
        websocket: WebSocket,
        *,
        services: Services,
        hub: Hub,
        principal: Principal,
        session: Session,
    ) -> None:
        settings = services.settings
        self.websocket = websocket
        self.services = services
        self.hub = hub
        self.principal = principal
        self.expires_at = principal.expires_at
        self.session = session
        self.outbox = Outbox(
            settings.ws_send_queue_frames,
            max_bytes=settings.ws_send_queue_bytes,
            budget=session.budget,
            direct=direct_writer(websocket.scope),
        )
        self.subscriber = Subscriber(hub, self.outbox)
        self.rate = MessageRate(settings.ws_max_messages_per_second)
        self.test_faults = settings.environment == "test"

    async def run(self) -> None:
        self.outbox.put(
            frame(
                {
                    "type": "connection",
                    "status": "connected",
                    "user": self.principal.username,
                    "timestamp": iso(utcnow()),
                }
            )
        )
        reader = asyncio.create_task(self._read(), name="ws-read")
        writer = asyncio.create_task(self._write(), name="ws-write")
        watcher = asyncio.create_task(self._watch(), name="ws-watch")
        tasks = {reader, writer, watcher}
        close: Close | None = None
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if isinstance(exc, Close):
                    close = exc
                elif exc is not None and not isinstance(exc, ClientGone):
                    log.error("websocket_error", exc_info=exc)
                    close = Close(INTERNAL_ERROR, "Internal server error")
        finally:
            self.subscriber.close()
            for task in tasks:
                await cancel_and_wait(task)
            self.outbox.release()
        if close is not None:
            await self._close(close)

    async def _close(self, close: Close) -> None:
        if self.websocket.application_state != WebSocketState.CONNECTED:
            return
        # Messages are still read (and dropped) meanwhile: a client blocked sending to us
        # would otherwise never get to read, nor to see its close frame.
        discard = asyncio.create_task(self._discard_incoming(), name="ws-discard")
        try:
            # A client that stopped reading cannot take the close frame either: bounded wait.
            with contextlib.suppress(TimeoutError, OSError, RuntimeError, WebSocketDisconnect):
                await asyncio.wait_for(
                    self.websocket.close(close.code, close.reason), CLOSE_GRACE_SECONDS
                )
        finally:
            await cancel_and_wait(discard)

    async def _discard_incoming(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, WebSocketDisconnect):
            while (await self.websocket.receive())["type"] != "websocket.disconnect":
                pass

    async def _write(self) -> None:
        send = self.websocket.send_text
        try:
            while True:
                frames = await self.outbox.take()
                if self.outbox.overflowed.is_set():
                    raise Close(TRY_AGAIN_LATER, "Too slow: resume with since")
                for text in frames:
                    await send(text)
        except (OSError, WebSocketDisconnect) as exc:
            raise ClientGone() from exc

    async def _watch(self) -> None:
        """Close at token expiry, on revocation, or when the client is too slow."""
        end = await watch_session(
            self.session,
            feed=self.hub.feed,
            outbox=self.outbox,
            expires_at=self.expires_at,
            recheck=lambda: recheck(
                self.services.authenticator,
                self.principal,
                admin=not ADMINS_ONLY.isdisjoint(self.subscriber.collections),
            ),
        )
        raise Close(TRY_AGAIN_LATER if end.reason == "overflow" else POLICY_VIOLATION, end.message)

    async def _read(self) -> None:
        websocket = self.websocket
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise ClientGone()
            if not self.rate.allow():
                raise Close(POLICY_VIOLATION, "Message rate exceeded")
            text = message.get("text")
            if text is None:
                self.outbox.put(error_frame("invalid_message", "Send JSON objects as text frames"))
                continue
            try:
                body = orjson.loads(text)
            except orjson.JSONDecodeError:
                self.outbox.put(error_frame("invalid_json", "The message is not valid JSON"))
                continue
            if not isinstance(body, dict):
                self.outbox.put(error_frame("invalid_message", "The message must be a JSON object"))
                continue
            if json_depth_exceeds(body):
                too_deep = f"Objects and arrays nest at most {MAX_JSON_DEPTH} levels deep"
                self.outbox.put(error_frame("invalid_message", too_deep))
                continue
            try:
                await self._handle(body)
            except CommandError as exc:
                self.outbox.put(error_frame(exc.code, exc.message))

    async def _handle(self, body: dict[str, Any]) -> None:
        kind = body.get("type")
        if kind == "subscribe":
            collections = _collections(body.get("collections"), default=DEFAULT_SUBSCRIPTION)
            since = _since(body.get("since"))
            try:
                only = one_job(body.get("job"), collections)
            except ValueError as exc:
                raise CommandError("invalid_command", str(exc)) from None
            refused = [name for name in collections if name in ADMINS_ONLY]
            if refused and self.principal.role != "admin":
                raise CommandError("forbidden", f"Only admins may follow {refused[0]!r}")
            try:
                await self.subscriber.subscribe(collections, since, only=only)
            except ResyncRequired as exc:
                self.outbox.put(frame({"type": "resync_required", "revision": exc.revision}))
            except DatabaseUnavailable:
                raise CommandError(
                    "unavailable", "The database is unavailable; try again"
                ) from None
            except ReplayInterrupted as exc:
                log.warning("websocket_replay_interrupted", error=str(exc))
                raise Close(INTERNAL_ERROR, "Replay interrupted; resume with since") from None
        elif kind == "unsubscribe":
            # Without `collections`: all this user may follow, whatever was subscribed.
            everything = (
                SUBSCRIBABLE
                if self.principal.role == "admin"
                else tuple(name for name in SUBSCRIBABLE if name not in ADMINS_ONLY)
            )
            collections = _collections(body.get("collections"), default=everything)
            self.subscriber.unsubscribe(collections)
            self.outbox.put(frame({"type": "unsubscribed", "collections": collections}))
        elif kind == "ping":
            revision = max(self.hub.feed.delivered, self.subscriber.position)
            self.outbox.put(frame({"type": "pong", "revision": revision}))
        elif kind == "test.fault" and self.test_faults:
            raise RuntimeError("fault injected by a test")
        else:
            self.outbox.put(
                frame(
                    {
                        "type": "message",
                        "data": body,
                        "timestamp": iso(utcnow()),
                        "user": self.principal.username,
                    }
                )
            )


class ClientGone(Exception):
    """The client closed the connection or went away."""


async def _admit(websocket: WebSocket) -> Principal:
    principal = await authenticate_websocket(websocket, presented_token(websocket.scope))
    if principal.expires_at <= time.time():
        raise Unauthorized("Token expired")
    return principal


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    """Close with `code`; a client that has already gone is no error worth a log line."""
    with contextlib.suppress(OSError, RuntimeError, WebSocketDisconnect):
        await websocket.close(code, reason)


async def _serve(websocket: WebSocket) -> None:
    services = services_of(websocket)
    hub = services.hub
    try:
        principal = await _admit(websocket)
    except Unauthorized as exc:
        await _refuse(websocket, POLICY_VIOLATION, exc.message)
        return
    except DatabaseUnavailable:
        await _refuse(websocket, INTERNAL_ERROR, "The database is unavailable")
        return
    session = hub.open_session(
        principal.username, limit=services.settings.ws_max_connections_per_user
    )
    if session is None:
        await _refuse(websocket, POLICY_VIOLATION, "Too many connections for this user")
        return
    services.metrics.websockets.inc()
    try:
        connection = Connection(
            websocket,
            services=services,
            hub=hub,
            principal=principal,
            session=session,
        )
        await connection.run()
    finally:
        hub.close_session(session)
        services.metrics.websockets.dec()


@router.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    # Accept before judging the token, so that a refusal is a close code the client can see.
    await websocket.accept(chosen_subprotocol(websocket.scope.get("subprotocols", ())))
    try:
        await _serve(websocket)
    except Exception:
        # Never a bare drop: the client sees 1011.
        log.error("websocket_error", exc_info=True)
        if websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    websocket.close(INTERNAL_ERROR, "Internal server error"), CLOSE_GRACE_SECONDS
                )
