"""`/console` and its files, and `/` sending browsers there.

The console is a client like any other: these routes only hand out its static files; every
piece of data it shows comes from the public API and the change feed.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from pathlib import Path

import orjson
from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from orchestrator.errors import NotFound
from orchestrator.http.static import StaticAsset

CONSOLE = "/console"
STATIC = Path(__file__).parent / "static"
VERSION_FILE = "version.json"

router = APIRouter(include_in_schema=False)


@functools.cache
def _assets() -> dict[str, StaticAsset]:
    assets = {
        path.name: StaticAsset.from_file(path)
        for path in sorted(STATIC.iterdir())
        if path.is_file() and not path.name.startswith(".")
    }
    # One digest of every file: an open console compares it after reconnecting, and asks
    # for a reload when the server now serves another console.
    digest = hashlib.sha256("".join(a.etag for a in assets.values()).encode()).hexdigest()
    version = orjson.dumps({"version": digest[:16]})
    assets[VERSION_FILE] = StaticAsset.from_bytes(version, "application/json")
    return assets


async def _asset(name: str) -> StaticAsset:
    # Read and compressed once per process, off the event loop; then no thread hop per request.
    loaded = _assets() if _assets.cache_info().currsize else await asyncio.to_thread(_assets)
    asset = loaded.get(name)
    if asset is None:
        raise NotFound()
    return asset


@router.get("/")
async def root() -> Response:
    return RedirectResponse(CONSOLE, status_code=307)


@router.get(CONSOLE)
async def console(request: Request) -> Response:
    return (await _asset("index.html")).response(request)


@router.get(f"{CONSOLE}/{{name}}")
async def console_file(name: str, request: Request) -> Response:
    return (await _asset(name)).response(request)
