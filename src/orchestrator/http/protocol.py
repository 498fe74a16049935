"""uvicorn's httptools protocol with the bounds it lacks: head size and head and body time.

httptools (llhttp) accepts a request head of any size and uvicorn arms no timer until the
first response is complete, so a client could hold memory and a connection for free: four
unfinished 64 MiB headers cost 277 MiB, and a half-sent request stayed open forever. This
subclass counts the head's bytes as they arrive, starts the keep-alive timer on connect, and
gives a head or a body that does not arrive whole in one read a deadline. It also sends a
response's head with its body (`_OneWriteResponse`).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, ClassVar

import httptools
import structlog
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from orchestrator.context import request_id_var
from orchestrator.http.errors import error_body

log = structlog.get_logger(__name__)
# Longest path echoed in a refusal's envelope (the refused head may be all path).
_MAX_ECHOED_PATH = 1024


class _HeadTooLarge(Exception):
    """Raised inside the parser's callback to stop parsing a head over the limit."""


class BoundedHttpProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection, whose request heads are bounded in size and time."""

    max_head_bytes: ClassVar[int] = 64 * 1024
    head_timeout: ClassVar[float] = 10.0
    body_timeout: ClassVar[float] = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = False
        self._in_body = False
        self._head_bytes = 0  # bytes of chunks read wholly while the head was incomplete
        self._chunk_bytes = 0  # the chunk being parsed
        self._deadline: asyncio.TimerHandle | None = None

    @classmethod
    def configured(
        cls, *, max_head_bytes: int, head_timeout: float, body_timeout: float
    ) -> type[BoundedHttpProtocol]:
        """A subclass with these limits (uvicorn instantiates the class it is given)."""
        attributes = {
            "max_head_bytes": max_head_bytes,
            "head_timeout": head_timeout,
            "body_timeout": body_timeout,
        }
        return type(cls.__name__, (cls,), attributes)

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that never sends a request is as idle as a kept-alive one.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._clear_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        whole_chunk_in_head = self._in_head
        self._chunk_bytes = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse(431, "Request headers too large")
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        # Deadlines are armed only for a request still incomplete after a read, so that the
        # usual request, whole in one read, costs no timer.
        if self._in_head:
            # A head still incomplete has buffered all of this chunk (in llhttp's header
            # value or uvicorn's URL): stop before the next one. The chunk in which a head
            # starts is not counted (it may end the request before it), which leaves memory
            # bounded by the limit and two reads.
            if whole_chunk_in_head:
                self._head_bytes += len(data)
                if self._head_bytes > self.max_head_bytes:
                    self._refuse(431, "Request headers too large")
                    return
            else:
                self._set_deadline(self.head_timeout, self._head_timed_out)
        elif self._in_body:
            if self._deadline is None:
                self._set_deadline(self.body_timeout, self._body_timed_out)
        elif self._deadline is not None:
            self._clear_deadline()

    # ------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._deadline is not None:
            self._clear_deadline()
        # The head is at most what was counted plus this chunk; sum it only when that is
        # over the limit.
        if self._head_bytes + self._chunk_bytes > self.max_head_bytes:
            size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
            if size > self.max_head_bytes:
                raise _HeadTooLarge()
        self._in_body = not (self.parser.should_upgrade() and self._should_upgrade())
        existing = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle is not existing:  # a request, not an upgrade
            # Its task is created but has not run: it writes through this from the start.
            cycle.transport = _OneWriteResponse(self.transport, cycle)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self._in_body = False
        if self._deadline is not None:
            self._clear_deadline()
        super().on_message_complete()

    def shutdown(self) -> None:
        if self._in_head:
            # A head under way belongs to no request the server has to finish.
            self.transport.close()
            return
        super().shutdown()

    # ------------------------------------------------------------------- internals

    def _set_deadline(self, seconds: float, callback: Any) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(seconds, callback)

    def _clear_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_timed_out(self) -> None:
        self._deadline = None
        if self._in_head and not self.transport.is_closing():
            log.info("http_head_timeout", seconds=self.head_timeout)
            self._refuse(408, "The request headers did not arrive in time")

    def _body_timed_out(self) -> None:
        self._deadline = None
        if self._in_body and not self.transport.is_closing():
            # The application may be reading the body: it sees the client disconnect.
            log.info("http_body_timeout", seconds=self.body_timeout)
            self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        """Answer with the error envelope and close, before any application code runs."""
        self._in_head = self._in_body = False
        self._clear_deadline()
        request_id = f"{random.getrandbits(128):032x}"
        token = request_id_var.set(request_id)
        try:
            body = error_body(
                status=status, message=message, path=self._path(), method=self._method()
            )
        finally:
            request_id_var.reset(token)
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"x-request-id: " + request_id.encode("ascii") + b"\r\n",
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(head))
        self.transport.close()

    def _path(self) -> str:
        url = getattr(self, "url", b"")
        if not url or len(url) > _MAX_ECHOED_PATH:
            return ""
        try:
            return httptools.parse_url(url).path.decode("latin-1")
        except httptools.HttpParserInvalidURLError:
            return ""

    def _method(self) -> str:
        try:
            return self.parser.get_method().decode("ascii")
        except (httptools.HttpParserError, UnicodeDecodeError, AttributeError):
            return ""


class _OneWriteResponse:
    """A request's view of its connection's transport, which sends a response's head with
    the first part of its body: one write (one system call, one TCP segment) instead of two.

    uvicorn writes the head as soon as the application starts the response, and the body when
    it comes, which for our responses is at once: the second write cost about 5% of the CPU
    of a task creation, in the server's system call and the kernel's loopback delivery. Only a
    head that announces a `Content-Length` (a body follows, and is all there is) is held; a
    streamed (chunked) response's head, as a HEAD response's, goes out at once, so that an
    event stream's client sees it before the first event. A held head goes out before
    anything else written or a close (an application failing after it started the response).
    """

    __slots__ = ("_cycle", "_head", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        self._transport = transport
        # Until its head is written: then let go of it, for the cycle holds us (a reference
        # cycle would leave every request's scope and cycle to the garbage collector: 5-10%
        # more CPU on the GET scenarios).
        self._cycle: RequestResponseCycle | None = cycle
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.writelines((head, data))
            return
        cycle = self._cycle
        if cycle is not None and cycle.response_started:
            # uvicorn's first write once the response started is its head (before it, only
            # a `100 Continue` is written, from `receive`).
            self._cycle = None
            if cycle.chunked_encoding is False and cycle.scope["method"] != "HEAD":
                self._head = data
                return
        self._transport.write(data)

    def close(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


# The scope extension through which `QuietWebSocketProtocol` offers the application its
# direct frame writer: `{"write": callable(frame: bytes) -> bool}`.
DIRECT_FRAMES = "orchestrator.websocket.direct_frames"


class QuietWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, which no longer logs an ERROR for each refused handshake,
    and which offers the application a direct frame writer.

    It marks a handshake complete on accept and on close, but not when the application refuses
    it with an HTTP response (our 429), so that every such refusal logged "ASGI callable
    returned without completing handshake" at ERROR (uvicorn pull request #3138).

    The direct writer (`write_frame`, in the scope's extensions under `DIRECT_FRAMES`) lets
    the change feed's fan-out write one frame, encoded once for every subscriber, to each
    socket that can take it at once, instead of waking a task per subscriber to encode and
    send the same text through every layer of ASGI `send`.
    """

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # unset when the handshake was refused
        if scope is not None:
            # The application's task is created but has not run yet: it sees this.
            scope["extensions"][DIRECT_FRAMES] = {"write": self.write_frame}

    def write_frame(self, data: bytes) -> bool:
        """Write `data` (whole frames, unmasked, no extension bits) now, if the connection is
        open, accepted, not closing, and its transport below its high-water mark (where
        `send` would not wait); False (nothing written) otherwise."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.initial_response is not None
            or not self.writable.is_set()
            or self.conn.state is not State.OPEN
            or self.conn.extensions
            or self.transport.is_closing()
        ):
            return False
        self.transport.write(data)
        return True

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            self.handshake_complete = True
