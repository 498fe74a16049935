"""HEAD on every GET route: route it as GET and send the headers without the body.

FastAPI routes declare GET only, and listing HEAD on them as well would give each operation a
duplicate id in the OpenAPI document; doing it here covers every route, present and future.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGetMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        # A copy: the server (and the outer middleware) must still see HEAD.
        inner = {**scope, "method": "GET"}

        def share_routing() -> None:
            for key, value in inner.items():
                if key != "method":
                    scope[key] = value

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.start":
                share_routing()
            elif message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        try:
            await self.app(inner, receive, send_headers_only)
        finally:
            share_routing()
