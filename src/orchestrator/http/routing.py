"""Routers whose routes are made when the app mounts them, not when their module is imported.

Starlette compiles a route's path as the route is made, and our paths use the `id` convertor
(`http/resource_ids.py`), which `create_app` registers: so the route modules only record
their routes, and `create_app` makes them after registering it.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, get_type_hints

from fastapi import APIRouter, params
from fastapi._compat import ModelField
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_body_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from orchestrator.http.content_type import NO_BODY, parsed_body


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
    that takes the request, and a JSON body model. For those (see `_LeanPlan.of`) the handler
    below does the same in the same order: body read first (by `JsonContentTypeMiddleware`,
    which hands on the document it parsed), then the dependencies in their declared order,
    then the body's validation by FastAPI's own function (same errors, same envelope), then
    the endpoint. Every other route, and any request the plan does not cover (no parsed body,
    dependency overrides in place), goes through FastAPI's handler as before.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        full = super().get_route_handler()
        plan = _LeanPlan.of(self)
        return full if plan is None else plan.handler(full, self.dependency_overrides_provider)


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

    def handler(
        self,
        full: Callable[[Request], Coroutine[Any, Any, Response]],
        overrides: Any,
    ) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint
        path_params = self.path_params
        request_param = self.request_param
        dependencies = self.dependencies
        body_fields = [self.body] if self.body is not None else None

        async def lean(request: Request) -> Response:
            scope = request.scope
            document = NO_BODY
            if body_fields is not None:
                document = parsed_body(scope)
                if document is NO_BODY:
                    return await full(request)  # no body, or one read another way
            if overrides is not None and overrides.dependency_overrides:
                return await full(request)
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
            return response

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
