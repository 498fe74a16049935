"""The application's own ASGI stack: FastAPI's, without the layers it runs for features we
do not use, and with the exception handlers' layer paid for only when something is raised.

FastAPI wraps the app's middleware in three outer layers and two inner ones, and every
request walks all five, each a coroutine call and most a wrapped `send`:
- `ServerErrorMiddleware` answers an unexpected exception with a plain-text 500. Ours
  (`UnhandledErrorMiddleware`, inside the request id, access log and security headers)
  answers it first, in the error envelope; anything raised outside it reaches the server,
  which answers 500 and logs it, as this layer would.
- `ExceptionTelemetryMiddleware` and `AppBodyLimitMiddleware` serve FastAPI's OpenTelemetry
  hooks and its `max_body_size`, which the app turns off and leaves unset
  (`BodyLimitMiddleware` bounds bodies, with our envelope).
- `ExceptionMiddleware` (Starlette's) becomes `HandledErrors`, below.
- `AsyncExitStackMiddleware` holds the exit stack FastAPI's general request handler closes
  uploaded files with; `RouteIndex` opens it only for the routes that use that handler.

Leaving out the first three (and FastAPI's per-request telemetry check) took `GET /health`
from 81 to 74 µs of CPU per request; the other two were not measured apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from starlette._exception_handler import wrap_app_handling_exceptions
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket


class Application(FastAPI):
    """FastAPI with the stack described above."""

    def build_middleware_stack(self) -> ASGIApp:
        handlers = self.exception_handlers
        if 500 in handlers or Exception in handlers:  # FastAPI's ServerErrorMiddleware runs those
            raise RuntimeError("a 500 handler would not run: errors are answered in the stack")
        app: ASGIApp = HandledErrors(self.router, handlers=handlers, debug=self.debug)
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await super().__call__(scope, receive, send)  # the lifespan, as FastAPI runs it
            return
        scope["app"] = self
        stack = self.middleware_stack
        if stack is None:
            stack = self.middleware_stack = self.build_middleware_stack()
        await stack(scope, receive, send)


class HandledErrors:
    """Starlette's `ExceptionMiddleware`, entered only when an exception reaches it.

    It puts the app's exception handlers in the scope (each route's own wrapper answers what
    the route raises with them), and answers what the router raises (its 404s and 405s) as
    Starlette's does, with the same wrapper over the same handlers. Starlette's builds a
    `Request` and wraps `send` on every request only to know, when an exception comes,
    whether a response had started; none can have: the routes' wrappers turn an exception
    raised after their response started into an unhandled one.
    """

    def __init__(self, app: ASGIApp, *, handlers: Mapping[Any, Any], debug: bool = False) -> None:
        self.app = app
        # What Starlette's own layer puts in the scope for the routes' wrappers: its handler
        # tables (private attributes of the pinned version; the suite's 404, 405, 401, 422
        # and 503 tests go through them).
        prototype = ExceptionMiddleware(app, handlers=dict(handlers), debug=debug)
        self._in_scope = (prototype._exception_handlers, prototype._status_handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope["starlette.exception_handlers"] = self._in_scope
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            conn: Request | WebSocket = (
                Request(scope, receive, send)
                if scope["type"] == "http"
                else WebSocket(scope, receive, send)
            )
            await wrap_app_handling_exceptions(raising(exc), conn)(scope, receive, send)


def raising(exc: Exception) -> ASGIApp:
    """An app that raises `exc`: for handing an exception to a layer that handles them."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise exc

    return app
