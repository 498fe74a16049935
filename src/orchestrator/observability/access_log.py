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


class AccessLogMiddleware:
    """`identify` names the user of a WebSocket's credential when its route has not (a refusal
    before any route ran); it must not do I/O."""

    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, identify: Callable[[Scope], str | None]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.identify = identify

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        start = time.perf_counter()
        status = 0
        client_left = False

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        async def receive_and_record() -> Message:
            nonlocal client_left
            message = await receive()
            if message["type"] == "http.disconnect":
                client_left = True
            return message

        metrics.in_flight.inc()
        try:
            await self.app(scope, receive_and_record, send_and_record)
        finally:
            if not status:
                # No answer: a client that left before it (nginx's 499) is no server error.
                status = CLIENT_CLOSED_REQUEST if client_left else 500
            elapsed = time.perf_counter() - start
            state = scope.get("state", {})
            route = route_template(scope)
            method = scope["method"]
            metrics.in_flight.dec()
            metrics.observe_request(route, method, status, elapsed)
            if state.get("login_failed"):
                metrics.failed_logins.inc()
            access_line(
                ERROR if status >= 500 else INFO,
                "request",
                method=method,
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 3),
                user=state.get("user"),
            )

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
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
            await self.app(scope, receive_and_record, send_and_record)
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
