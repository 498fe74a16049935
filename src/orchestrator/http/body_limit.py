"""Refuse request bodies over the limit with 413, before reading them when possible."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.http.errors import error_response


class BodyTooLarge(HTTPException):
    """Raised inside `receive` when a streamed body passes the limit.

    An `HTTPException`, because FastAPI re-raises those from its body parsing (anything else
    becomes a 400) and the exception handlers then answer 413 in the envelope.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"The request body is larger than {limit} bytes", headers={"Connection": "close"}
        )


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        has_body = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await self._too_large(scope, receive, send)
                    return
                has_body = value != b"0"
            elif name == b"transfer-encoding":
                has_body = True
        if not has_body:  # HTTP/1.1: neither header, no body (the server enforces it)
            await self.app(scope, receive, send)
            return

        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            # Only reached when the body was read outside a route (the handlers answer inside).
            if not started:
                await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            scope,
            413,
            f"The request body is larger than {self.max_bytes} bytes",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)
