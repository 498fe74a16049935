"""Routers whose routes are made when the app mounts them, not when their module is imported.

Starlette compiles a route's path as the route is made, and our paths use the `id` convertor
(`http/resource_ids.py`), which `create_app` registers: so the route modules only record
their routes, and `create_app` makes them after registering it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from starlette.routing import BaseRoute


class Routes(APIRouter):
    """An `APIRouter` whose decorators record routes; `build()` makes them."""

    def __init__(self, **options: Any) -> None:
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
