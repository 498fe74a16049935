from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from orchestrator.app import create_app
from orchestrator.db.migrate import upgrade
from tests.netproxy import NetProxy
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.settings import make_settings
from tests.support.users import ADMIN_PASSWORD, login


@pytest.mark.parametrize("prefix", ["", "/api/v1"])
async def test_health_is_healthy_without_database(client: httpx.AsyncClient, prefix: str) -> None:
    response = await client.get(f"{prefix}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


@pytest.mark.parametrize("prefix", ["", "/api/v1"])
async def test_healthz_does_a_database_round_trip(client: httpx.AsyncClient, prefix: str) -> None:
    response = await client.get(f"{prefix}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_head_works_on_get_routes(client: httpx.AsyncClient) -> None:
    response = await client.head("/health")
    assert response.status_code == 200
    assert response.content == b""


async def test_unknown_route_gets_404_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/thing", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "http_exception"
    assert error["code"] == 404
    assert error["path"] == "/no/such/thing"
    assert error["method"] == "GET"
    assert error["request_id"] == "abc-123" == response.headers["x-request-id"]


async def test_wrong_method_gets_405_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.post("/health")
    assert response.status_code == 405
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}
    assert response.json()["error"]["code"] == 405


async def test_head_answers_on_every_get_route(app: FastAPI, client: httpx.AsyncClient) -> None:
    """Generic over the app's routes, so routes added later are covered too."""
    checked = 0
    for route in iter_route_contexts(app.routes):
        if "GET" not in (route.methods or ()) or route.path is None:
            continue
        path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), route.path)
        get = await client.get(path)
        head = await client.head(path)
        assert head.status_code == get.status_code, path
        assert head.content == b"", path
        if get.status_code == 200:
            # the headers of the GET (its length may differ: /metrics counts this request)
            assert head.headers["content-type"] == get.headers["content-type"], path
            assert int(head.headers["content-length"]) > 0, path
        checked += 1
    assert checked >= 6


async def test_wrong_method_gets_405_with_every_allowed_method(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """For each path, a method no route serves gets 405 naming exactly the methods it serves."""
    routes = [r for r in iter_route_contexts(app.routes) if r.methods and r.path]
    templates = {route.path for route in routes if route.path is not None}
    assert templates
    for template in sorted(templates):
        path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), template)
        # every route matching the path serves here (/users/me is also /users/{username})
        methods = {m for r in routes if r.path_regex.fullmatch(path) for m in r.methods or ()}
        if "GET" in methods:
            methods.add("HEAD")
        unused = next(m for m in ("PATCH", "PUT", "DELETE", "POST") if m not in methods)
        response = await client.request(unused, path, headers={"X-Request-ID": "r-405"})
        assert response.status_code == 405, (template, unused)
        allow = {m.strip() for m in response.headers["allow"].split(",")}
        assert allow == methods, template
        assert response.json()["error"]["request_id"] == "r-405"


async def test_a_literal_path_is_not_taken_for_an_id(client: httpx.AsyncClient) -> None:
    """/api/v1/jobs/claim names no job: reading it is a 405 that allows only POST."""
    response = await client.get("/api/v1/jobs/claim")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_health_and_healthz_while_postgres_is_cut_and_restored(
    tmp_path: Path, backend: str
) -> None:
    """A real TCP proxy between the app and PostgreSQL: cut it, then restore it."""
    url = await create_postgres_database()
    try:
        await asyncio.to_thread(upgrade, url)
        async with NetProxy("127.0.0.1", _port(url)) as proxy:
            proxied = url.replace(f":{_port(url)}/", f":{proxy.port}/")
            settings = make_settings(proxied, tmp_path / "data", db_timeout_seconds=1.0)
            application = create_app(settings)
            async with (
                application.router.lifespan_context(application),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=application), base_url="http://t"
                ) as client,
            ):
                headers = await login(client, "admin", ADMIN_PASSWORD)
                assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200
                assert (await client.get("/healthz")).status_code == 200

                await proxy.cut()
                down = await client.get("/healthz", headers={"X-Request-ID": "cut-1"})
                assert down.status_code == 500
                error = down.json()["error"]
                assert error["type"] == "internal_server_error"
                assert error["request_id"] == "cut-1" == down.headers["x-request-id"]
                assert (await client.get("/api/v1/healthz")).status_code == 500
                # Liveness and the token check need no database round trip.
                assert (await client.get("/health")).json() == {"status": "healthy"}
                me = await client.get("/api/v1/users/me", headers=headers)
                assert me.status_code == 200
                assert me.json()["username"] == "admin"

                proxy.restore()
                assert (await client.get("/healthz")).json() == {"status": "ok"}
    finally:
        await drop_postgres_database(url)


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port
