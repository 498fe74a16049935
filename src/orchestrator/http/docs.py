"""`/docs` (Swagger UI) and `/redoc`, rendered from assets the service serves itself.

The Swagger UI and ReDoc bundles come from the `fastapi-offline` package, which ships current
builds of both; nothing is fetched from a CDN, so the pages work on a machine with no internet.
"""

from __future__ import annotations

import asyncio
import functools
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.responses import Response

from orchestrator.errors import NotFound
from orchestrator.http.static import StaticAsset, load_assets

DOCS_ASSETS = "/docs/assets"
_OWN = Path(__file__).parent / "docs_assets"
_VENDOR = {
    "swagger-ui-bundle.js": "swagger-ui-bundle.js",
    "swagger-ui.css": "swagger-ui.css",
    "redoc.standalone.js": "redoc.standalone.js",
    "favicon.png": "favicon.png",
}


@functools.cache
def _assets() -> dict[str, StaticAsset]:
    vendor = Path(str(files("fastapi_offline") / "static"))
    return {
        **load_assets(vendor, _VENDOR),
        **load_assets(_OWN, {"swagger-init.js": "swagger-init.js"}),
        "/docs": StaticAsset.from_file(_OWN / "swagger.html"),
        "/redoc": StaticAsset.from_file(_OWN / "redoc.html"),
    }


async def _asset(name: str) -> StaticAsset:
    # Read and compressed once per process (about 3 MB), off the event loop.
    assets = _assets() if _assets.cache_info().currsize else await asyncio.to_thread(_assets)
    asset = assets.get(name)
    if asset is None:
        raise NotFound()
    return asset


def install_docs(app: FastAPI) -> None:
    """Serve the two documentation pages and their assets (the app has its own docs off)."""

    async def page(request: Request) -> Response:
        return (await _asset(request.url.path)).response(request)

    async def asset(name: str, request: Request) -> Response:
        return (await _asset(name)).response(request)

    for path in ("/docs", "/redoc"):
        app.add_api_route(path, page, methods=["GET"], include_in_schema=False)
    app.add_api_route(f"{DOCS_ASSETS}/{{name}}", asset, methods=["GET"], include_in_schema=False)
