"""One access line and the request metrics per request; connect and close lines per WebSocket."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.errors import ApiError
from orchestrator.observability.logging import access_line

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


def _services(scope: Scope) -> Any:
    return getattr(getattr(scope.get("app"), "state", None), "services", None)


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        services = _services(scope)
        metrics = services.metrics if services is not None else None
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

        if metrics is not None:
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
            if metrics is not None:
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
                    user=_websocket_user(scope),
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
                "user": _websocket_user(scope),
                "duration_ms": round((time.perf_counter() - start) * 1000, 3),
            }
            if accepted:
                access_line(INFO, "websocket_close", code=close_code, closed_by=closed_by, **fields)
            else:
                # uvicorn answers a close before accept with 403
                status = denied_status or 403
                access_line(INFO, "websocket_rejected", status=status, code=close_code, **fields)


def _websocket_user(scope: Scope) -> str | None:
    """The user the route settled on, or the subject of a valid token the client sent."""
    user = scope.get("state", {}).get("user")
    if isinstance(user, str):
        return user
    services = _services(scope)
    rate_limits = getattr(services, "rate_limits", None)
    if rate_limits is None:
        return None
    try:
        key: str = rate_limits.key_of(scope)
    except ApiError:
        return None
    return key.removeprefix("user:") if key.startswith("user:") else None
