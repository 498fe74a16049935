"""Request ids: keep a safe incoming `X-Request-ID`, otherwise make one, and echo it."""

from __future__ import annotations

import random
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.context import request_id_var

_SAFE = re.compile(rb"^[A-Za-z0-9._-]{1,128}$")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                if _SAFE.match(value):
                    request_id = value.decode("ascii")
                break
        if request_id is None:
            # uuid4().hex's length. Not a secret, so not from the OS's CSPRNG: a system call
            # per request showed up in the profile.
            request_id = f"{random.getrandbits(128):032x}"
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
