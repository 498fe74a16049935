"""A 405's `Allow` lists every method the path supports.

Starlette answers 405 from the first route whose path matched, so with one route per method
(`GET /jobs`, `POST /jobs`) `Allow` named only one of them; here it is the union of all.
"""

from __future__ import annotations

from fastapi.routing import iter_route_contexts
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def allowed_methods(scope: Scope) -> list[str]:
    """The methods of every route whose path matches this request."""
    methods: set[str] = set()
    for route in iter_route_contexts(scope["app"].routes):
        match, _ = route.matches(scope)
        if match != Match.NONE and route.methods:
            methods |= set(route.methods)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


class AllowHeaderMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"allow"]
                allow = ", ".join(allowed_methods(scope)).encode("latin-1")
                message["headers"] = [*headers, (b"allow", allow)]
            await send(message)

        await self.app(scope, receive, send_with_allow)
