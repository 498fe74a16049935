"""One access line and the request metrics per request; connect and close lines per WebSocket."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.observability.logging import access_line
from orchestrator.observability.metrics import Metrics

INFO, ERROR = logging.INFO, logging.ERROR
CLIENT_CLOSED_REQUEST = 499


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/api/v1/jobs/{job_id}`), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path_format", None)  # `{job_id}`, without the `:id` convertor
    return path if isinstance(path, str) else "<unmatched>"


def name_plain_routes(routes: Iterable[BaseRoute]) -> None:
    """Let each plain Starlette route (FastAPI's own `/openapi.json`) name itself in the scope,
    as FastAPI's routes do, so that it is counted and logged under its path, not unmatched."""
    for route in routes:
        if isinstance(route, Route) and not isinstance(route, APIRoute):
            route.app = _naming(route, route.app)


def _naming(route: Route, app: ASGIApp) -> ASGIApp:
    async def named(scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = route
        await app(scope, receive, send)

    return named


class AccessLog:
    """Records each request (metrics and its access line) and follows each WebSocket (its
    connect and close lines): `Edge` calls it, around the whole of the app.

    `identify` names the user of a WebSocket's credential when its route has not (a refusal
    before any route ran); it must not do I/O."""

    def __init__(self, *, metrics: Metrics, identify: Callable[[Scope], str | None]) -> None:
        self.metrics = metrics
        self.identify = identify

    def began(self) -> None:
        """A request came in (it is in flight until `ended`)."""
        self.metrics.requests_in_flight += 1

    def ended(self, scope: Scope, status: int, seconds: float) -> None:
        """A request that `began` ended with `status` (499: the client left before it)."""
        metrics = self.metrics
        state = scope.get("state", {})
        route = route_template(scope)
        method = scope["method"]
        metrics.requests_in_flight -= 1
        metrics.observe_request(route, method, status, seconds)
        if state.get("login_failed"):
            metrics.failed_logins.inc()
        access_line(
            ERROR if status >= 500 else INFO,
            "request",
            method=method,
            route=route,
            status=status,
            duration_ms=round(seconds * 1000, 3),
            user=state.get("user"),
        )

    async def websocket(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Run `app` on a WebSocket connection, logging its connect and close (or refusal)."""
        start = time.perf_counter()
        accepted = False
        denied_status: int | None = None
        close_code: int | None = None
        closed_by: str | None = None

        async def send_and_record(message: Message) -> None:
            nonlocal accepted, denied_status, close_code, closed_by
            kind = message["type"]
            if kind == "websocket.accept":
                accepted = True
                access_line(
                    INFO,
                    "websocket_connect",
                    route=route_template(scope),
                    path=scope["path"],
                    user=self._websocket_user(scope),
                )
            elif kind == "websocket.close" and close_code is None:
                close_code, closed_by = message.get("code", 1000), "server"
            elif kind == "websocket.http.response.start":
                denied_status = message["status"]
            await send(message)

        async def receive_and_record() -> Message:
            nonlocal close_code, closed_by
            message = await receive()
            if message["type"] == "websocket.disconnect" and close_code is None:
                close_code, closed_by = message.get("code", 1005), "client"
            return message

        try:
            await app(scope, receive_and_record, send_and_record)
        finally:
            fields = {
                "route": route_template(scope),
                "path": scope["path"],
                "user": self._websocket_user(scope),
                "duration_ms": round((time.perf_counter() - start) * 1000, 3),
            }
            if accepted:
                access_line(INFO, "websocket_close", code=close_code, closed_by=closed_by, **fields)
            else:
                # uvicorn answers a close before accept with 403
                status = denied_status or 403
                access_line(INFO, "websocket_rejected", status=status, code=close_code, **fields)

    def _websocket_user(self, scope: Scope) -> str | None:
        """The user the route settled on, or the one the client's credential names."""
        user = scope.get("state", {}).get("user")
        return user if isinstance(user, str) else self.identify(scope)
