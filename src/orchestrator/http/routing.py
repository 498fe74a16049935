"""Routing: routers whose routes are made when the app mounts them, lean routes, and an index
of the app's routes by path.

Starlette compiles a route's path as the route is made, and our paths use the `id` convertor
(`http/resource_ids.py`), which `create_app` registers: so the route modules only record
their routes, and `create_app` makes them after registering it. `LeanRoute` and `RouteIndex`
take the framework's generic machinery off the hot paths, with the same outcome.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, get_type_hints

from fastapi import APIRouter, params
from fastapi._compat import ModelField
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_body_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware
from fastapi.routing import (  # the router's own steps, repeated by RouteIndex
    APIRoute,
    _apply_router_form_limits,
    _update_scope,
)
from fastapi.telemetry._api import _route_selected
from starlette._exception_handler import wrap_app_handling_exceptions
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.http.content_type import NO_BODY, parsed_body
from orchestrator.http.stack import raising


class Routes(APIRouter):
    """An `APIRouter` whose decorators record routes; `build()` makes them."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("route_class", LeanRoute)
        super().__init__(**options)
        self._options = options
        self._recorded: list[Callable[[APIRouter], None]] = []

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        self._recorded.append(lambda router: router.add_api_route(path, endpoint, **kwargs))

    def add_api_websocket_route(
        self, path: str, endpoint: Callable[..., Any], name: str | None = None, **kwargs: Any
    ) -> None:
        self._recorded.append(
            lambda router: router.add_api_websocket_route(path, endpoint, name, **kwargs)
        )

    def build(self) -> list[BaseRoute]:
        """The routes, made now (with this router's tags and options, as FastAPI would)."""
        router = APIRouter(**self._options)
        for record in self._recorded:
            record(router)
        return list(router.routes)


def routes_of(router: APIRouter) -> list[BaseRoute]:
    return router.build() if isinstance(router, Routes) else list(router.routes)


class LeanRoute(APIRoute):
    """An `APIRoute` whose simple operations skip FastAPI's general request handler.

    FastAPI solves every request's parameters and dependencies generically: on an
    authenticated read that cost about a third of the request's CPU, for routes whose only
    parameters are ids the router has already matched, the request itself, a role dependency
    that takes the request, and a JSON body model. For those (see `_LeanPlan.of`) the route's
    app below does the same in the same order: body read first (by `JsonContentTypeMiddleware`,
    which hands on the document it parsed), then the dependencies in their declared order,
    then the body's validation by FastAPI's own function (same errors, same envelope), then
    the endpoint, whose exceptions go to the app's handlers as Starlette's wrapper would hand
    them. It is the route's whole ASGI app: FastAPI's wraps each request in two exit stacks
    (for dependencies with `yield`, which a lean route has none of) and a wrapped `send`.
    Every other route, and any request the plan does not cover (no parsed body, dependency
    overrides in place), goes through FastAPI's handler as before.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        plan = _LeanPlan.of(self)
        # FastAPI's handler (`full`) needs the exit stack `RouteIndex` opens for such routes.
        self.uses_exit_stack = plan is None
        if plan is not None:
            full = AsyncExitStackMiddleware(self.app)
            self.app = plan.app(full, self.dependency_overrides_provider)


@dataclass(frozen=True, slots=True)
class _LeanPlan:
    endpoint: Callable[..., Awaitable[Response]]
    path_params: tuple[str, ...]
    request_param: str | None
    dependencies: tuple[tuple[str | None, Callable[[Request], Awaitable[Any]]], ...]
    body: ModelField | None

    @classmethod
    def of(cls, route: APIRoute) -> _LeanPlan | None:
        """The plan of a route simple enough for it, else None."""
        dependant = route.dependant
        call = dependant.call
        if (
            call is None
            or not inspect.iscoroutinefunction(call)
            or not _returns_response(call)
            or dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or not _plain(dependant)
            or route._embed_body_fields
            or len(dependant.body_params) > 1
        ):
            return None
        if any(not _plain_str(field) for field in dependant.path_params):
            return None
        dependencies = []
        seen: set[Callable[..., Any]] = set()
        for sub in dependant.dependencies:
            sub_call = sub.call
            if (
                sub_call is None
                or sub_call in seen  # FastAPI would answer it from its cache: keep that its job
                or not inspect.iscoroutinefunction(sub_call)
                or sub.request_param_name is None
                or sub.path_params
                or sub.query_params
                or sub.header_params
                or sub.cookie_params
                or sub.body_params
                or sub.dependencies
                or sub.concurrency is not None
                or sub.own_oauth_scopes
                or not _plain(sub)
            ):
                return None
            seen.add(sub_call)
            dependencies.append((sub.name, sub_call))
        body = dependant.body_params[0] if dependant.body_params else None
        if body is not None and type(body.field_info) is not params.Body:
            return None  # forms and files
        return cls(
            endpoint=call,
            path_params=tuple(field.name for field in dependant.path_params),
            request_param=dependant.request_param_name,
            dependencies=tuple(dependencies),
            body=body,
        )

    def app(self, full: ASGIApp, overrides: Any) -> ASGIApp:
        endpoint = self.endpoint
        path_params = self.path_params
        request_param = self.request_param
        dependencies = self.dependencies
        body_fields = [self.body] if self.body is not None else None

        async def lean(scope: Scope, receive: Receive, send: Send) -> None:
            document = NO_BODY
            if body_fields is not None:
                document = parsed_body(scope)
                if document is NO_BODY:
                    await full(scope, receive, send)  # no body, or one read another way
                    return
            if overrides is not None and overrides.dependency_overrides:
                await full(scope, receive, send)
                return
            request = Request(scope, receive, send)
            try:
                values: dict[str, Any] = {}
                for name, dependency in dependencies:
                    solved = await dependency(request)
                    if name is not None:
                        values[name] = solved
                matched = scope["path_params"]
                for name in path_params:
                    values[name] = matched[name]
                if request_param is not None:
                    values[request_param] = request
                if body_fields is not None:
                    body_values, errors = await request_body_to_args(
                        body_fields=body_fields, received_body=document, embed_body_fields=False
                    )
                    if errors:
                        raise RequestValidationError(errors, body=document)
                    values.update(body_values)
                response = await endpoint(**values)
                if not isinstance(response, Response):
                    raise TypeError(f"{endpoint.__qualname__} must return a Response")
            except Exception as exc:
                # Answered by the app's exception handlers, exactly as the framework would.
                await wrap_app_handling_exceptions(raising(exc), request)(scope, receive, send)
                return
            await response(scope, receive, send)

        return lean


def _plain(dependant: Dependant) -> bool:
    """No parameter that only FastAPI's handler provides."""
    return (
        dependant.websocket_param_name is None
        and dependant.http_connection_param_name is None
        and dependant.response_param_name is None
        and dependant.background_tasks_param_name is None
        and dependant.security_scopes_param_name is None
    )


def _plain_str(field: ModelField) -> bool:
    """A path parameter that is the matched text as it is: a `str` with no constraint."""
    info = field.field_info
    return info.annotation is str and not info.metadata and field.alias == field.name


def _returns_response(call: Callable[..., Any]) -> bool:
    try:
        returned = get_type_hints(call).get("return")
    except Exception:
        return False
    return isinstance(returned, type) and issubclass(returned, Response)


class RouteIndex:
    """The app's router, trying for each path only the routes that could match it.

    The router tries its routes in order, a regular expression each, until one matches: an
    authenticated read of a job went through fifteen routes first, about a sixth of its CPU.
    A route's expression can only match a path that starts with the route's literal text
    (the path up to its first parameter), and a route without parameters only its own path;
    so the routes that pass that test, in their order, are tried exactly as the router
    would, with the same outcome (first full match, else the first partial one: a 405).
    A path none of them matches, a scope with a `root_path`, and anything but HTTP and
    WebSocket go to the router itself, which scans everything as before (404s, redirects,
    lifespan).
    """

    def __init__(self, router: APIRouter) -> None:
        self.router = router
        self.scan = AsyncExitStackMiddleware(router.app)  # the router's own dispatch
        self._indexed: list[BaseRoute] = []
        self._candidates: dict[tuple[str | None, tuple[str, ...]], list[BaseRoute]] = {}

    def _build(self) -> None:
        routes = list(self.router.routes)
        exact: dict[str, list[int]] = {}
        prefixes: dict[int, dict[str, list[int]]] = {}
        always: list[int] = []
        for position, route in enumerate(routes):
            path_format = getattr(route, "path_format", None)
            if not isinstance(route, Route | WebSocketRoute) or not isinstance(path_format, str):
                always.append(position)  # mounts, included routers: no shortcut
            elif "{" not in path_format:
                exact.setdefault(path_format, []).append(position)
            else:
                literal = path_format.partition("{")[0]
                prefixes.setdefault(len(literal), {}).setdefault(literal, []).append(position)
        self._routes = routes
        self._exact = exact
        self._prefixes = sorted(prefixes.items())
        self._always = always
        self._candidates = {}
        self._indexed = self.router.routes

    def candidates(self, path: str) -> list[BaseRoute]:
        """The routes that could match `path`, in the router's order."""
        routes = self.router.routes
        if routes is not self._indexed or len(routes) != len(self._routes):
            self._build()  # routes were added or replaced since
        literals = tuple(
            path[:length]
            for length, bucket in self._prefixes
            if length <= len(path) and path[:length] in bucket
        )
        key = (path if path in self._exact else None, literals)
        found = self._candidates.get(key)
        if found is None:
            positions = list(self._always)
            if key[0] is not None:
                positions += self._exact[key[0]]
            for _length, bucket in self._prefixes:
                for literal in literals:
                    positions += bucket.get(literal, ())
            found = [self._routes[p] for p in sorted(set(positions))]
            if len(self._candidates) < 4096:  # bounded: keys are routes' own texts
                self._candidates[key] = found
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("root_path"):
            await self.scan(scope, receive, send)
            return
        router = self.router
        # What the router does before matching (again, harmlessly, when it scans instead).
        _apply_router_form_limits(scope, router.form_limits)
        if "router" not in scope:
            scope["router"] = router
        partial: tuple[BaseRoute, Scope] | None = None
        for route in self.candidates(scope["path"]):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                await _handle(route, child_scope, scope, receive, send, full=True)
                return
            if match is Match.PARTIAL and partial is None:
                partial = (route, child_scope)
        if partial is None:
            await self.scan(scope, receive, send)  # no route: the router's fallbacks
            return
        await _handle(*partial, scope, receive, send, full=False)


async def _handle(
    route: BaseRoute, child_scope: Scope, scope: Scope, receive: Receive, send: Send, *, full: bool
) -> None:
    """What the router does with the route it picked."""
    _update_scope(scope, child_scope)
    path = getattr(route, "path_format", None)
    _route_selected(scope=scope, path=path, mount=isinstance(route, Mount))
    if _uses_exit_stack(route):
        async with AsyncExitStack() as stack:
            scope[EXIT_STACK] = stack
            await route.handle(scope, receive, send)
    elif full and isinstance(route, LeanRoute):
        # A full match is of an allowed method, and our routes are added as they are (no
        # included router's context): what `APIRoute.handle` would check, it would pass.
        await route.app(scope, receive, send)
    else:
        await route.handle(scope, receive, send)


# Where FastAPI's general request handler finds the exit stack it closes uploaded files with
# (its `AsyncExitStackMiddleware`'s default): opened for the routes that use that handler.
EXIT_STACK = "fastapi_middleware_astack"


def _uses_exit_stack(route: BaseRoute) -> bool:
    """False for the routes known not to use FastAPI's general handler: Starlette's own and
    lean ones. Anything else (FastAPI's routes, mounts) gets the stack."""
    if isinstance(route, APIRoute):
        return getattr(route, "uses_exit_stack", True)
    return not isinstance(route, Route | WebSocketRoute)


def index_routes(router: APIRouter) -> None:
    """Dispatch `router`'s requests through a `RouteIndex`."""
    router.middleware_stack = RouteIndex(router)
