"""Browser sessions: POST /auth/session sets an HttpOnly session cookie and a readable CSRF
cookie; the cookie works in place of a bearer token, unsafe methods need the double-submitted
CSRF token, the cookie rotates like a refresh token, and logout clears both."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from orchestrator.app import create_app
from orchestrator.services import Services
from tests.support.settings import make_settings
from tests.support.users import ADMIN_PASSWORD, PASSWORD, make_user

TASKS = "/api/v1/collab/tasks"
TASK_LIST = "/api/v1/collab/state/tasks"


@asynccontextmanager
async def serving(
    database_url: str, tmp_path: Path, base_url: str = "http://testserver", **overrides: object
) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    app: FastAPI = create_app(make_settings(database_url, tmp_path / "data", **overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client, app.state.services


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """Each Set-Cookie header of the response, by cookie name (attributes kept as sent)."""
    cookies = {}
    for header in response.headers.get_list("set-cookie"):
        name = header.split("=", 1)[0]
        cookies[name] = header
    return cookies


def value(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0].split("=", 1)[1]


def attributes(set_cookie: str) -> set[str]:
    return {part.strip() for part in set_cookie.split(";")[1:]}


async def browser_sign_in(
    client: httpx.AsyncClient, username: str = "admin", password: str = ADMIN_PASSWORD
) -> tuple[str, str]:
    """Sign in as a browser would; returns (session cookie, CSRF cookie)."""
    response = await client.post("/auth/session", json={"username": username, "password": password})
    assert response.status_code == 204, response.text
    cookies = set_cookies(response)
    return value(cookies["orch_session"]), value(cookies["orch_csrf"])


def jar(session: str, csrf: str | None = None) -> dict[str, str]:
    cookie = f"orch_session={session}" + (f"; orch_csrf={csrf}" if csrf else "")
    return {"Cookie": cookie}


@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
async def test_browser_sign_in_sets_an_httponly_strict_cookie_and_a_readable_csrf_cookie(
    database_url: str, tmp_path: Path, form: bool
) -> None:
    async with serving(database_url, tmp_path) as (client, _services):
        fields = {"username": "admin", "password": ADMIN_PASSWORD}
        response = await (
            client.post("/auth/session", data=fields)
            if form
            else client.post("/auth/session", json=fields)
        )
        assert response.status_code == 204, response.text
        assert response.content == b""
        assert response.headers["cache-control"] == "no-store"
        cookies = set_cookies(response)
        assert set(cookies) == {"orch_session", "orch_csrf"}
        session = attributes(cookies["orch_session"])
        assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= session
        assert "Secure" not in session  # plain HTTP outside production
        assert value(cookies["orch_session"]).startswith("ors_")
        csrf = attributes(cookies["orch_csrf"])
        assert {"SameSite=Strict", "Path=/"} <= csrf
        assert "HttpOnly" not in csrf  # the page reads it to send it back
        assert PASSWORD not in response.text

        wrong = {"username": "admin", "password": "not the password"}
        refused = await client.post(
            "/auth/session", data=wrong if form else None, json=None if form else wrong
        )
        assert refused.status_code == 401
        assert "set-cookie" not in refused.headers
        missing = await client.post("/auth/session", data={"username": "admin"})
        assert missing.status_code == 422
        assert missing.json()["error"]["type"] == "validation_error"


async def test_the_cookie_is_secure_over_https_through_a_trusted_proxy_and_in_production(
    database_url: str, tmp_path: Path
) -> None:
    fields = {"username": "admin", "password": ADMIN_PASSWORD}

    async def secure(client: httpx.AsyncClient, **headers: str) -> bool:
        response = await client.post("/auth/session", json=fields, headers=headers)
        assert response.status_code == 204, response.text
        flags = [attributes(c) for c in set_cookies(response).values()]
        assert len({"Secure" in f for f in flags}) == 1  # both cookies alike
        return "Secure" in flags[0]

    async with serving(database_url, tmp_path, base_url="https://testserver") as (client, _):
        assert await secure(client)
    async with serving(database_url, tmp_path, trusted_proxies=["127.0.0.1"]) as (client, _):
        assert await secure(client, **{"X-Forwarded-Proto": "https"})
        assert not await secure(client, **{"X-Forwarded-Proto": "http"})
        assert not await secure(client)
    async with serving(database_url, tmp_path) as (client, _):
        # from a peer that is no trusted proxy the header means nothing
        assert not await secure(client, **{"X-Forwarded-Proto": "https"})
    async with serving(database_url, tmp_path, environment="production") as (client, _):
        assert await secure(client)


async def test_sign_in_from_a_page_of_another_origin_is_refused(
    database_url: str, tmp_path: Path
) -> None:
    fields = {"username": "admin", "password": ADMIN_PASSWORD}
    async with serving(database_url, tmp_path, cors_origins=["https://console.example"]) as (
        client,
        _services,
    ):
        for origin in ("https://evil.example", "null", "http://testserver.evil.example"):
            response = await client.post("/auth/session", data=fields, headers={"Origin": origin})
            assert response.status_code == 403, origin
            assert "set-cookie" not in response.headers
        for origin in ("http://testserver", "https://console.example"):
            response = await client.post("/auth/session", data=fields, headers={"Origin": origin})
            assert response.status_code == 204, origin


async def test_the_cookie_works_in_place_of_a_bearer_and_unsafe_requests_need_the_csrf_token(
    database_url: str, tmp_path: Path
) -> None:
    async with serving(database_url, tmp_path) as (client, services):
        await make_user(services.db, "mia")
        session, csrf = await browser_sign_in(client, "mia", PASSWORD)
        me = await client.get("/api/v1/users/me", headers=jar(session, csrf))
        assert me.status_code == 200
        assert me.json()["username"] == "mia"
        assert (await client.get(TASK_LIST, headers=jar(session))).status_code == 200

        task = {"title": "from the browser"}
        for headers in (
            jar(session, csrf),  # no header
            {**jar(session, csrf), "X-CSRF-Token": "not-it"},  # wrong header
            {**jar(session), "X-CSRF-Token": csrf},  # header without the cookie
            {**jar(session, "forged"), "X-CSRF-Token": "forged"},  # equal, but not the session's
        ):
            response = await client.post(TASKS, json=task, headers=headers)
            assert response.status_code == 403, response.text
            assert response.json()["error"]["code"] == 403
            assert "CSRF" in response.json()["error"]["message"]
        assert (await client.get(TASK_LIST, headers=jar(session))).json()["items"] == []

        response = await client.post(
            TASKS, json=task, headers={**jar(session, csrf), "X-CSRF-Token": csrf}
        )
        assert response.status_code == 201, response.text
        assert response.json()["created_by"] == "mia"

        # a bearer token needs no CSRF token, cookie or not
        token = (
            await client.post("/auth/login", json={"username": "mia", "password": PASSWORD})
        ).json()["access_token"]
        response = await client.post(
            TASKS, json=task, headers={**jar(session), "Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 201

        listed = (await client.get("/api/v1/sessions", headers=jar(session))).json()["sessions"]
        assert {s["kind"] for s in listed} == {"browser", "token"}
        assert [s["current"] for s in listed if s["kind"] == "browser"] == [True]


@pytest.mark.parametrize(
    "cookie",
    [
        "garbage",
        "ors_" + "A" * 43,  # well-formed, unknown
        "ort_" + "A" * 43,  # a refresh token's shape
        "eyJhbGciOiJIUzI1NiJ9.e30.c2ln",  # a JWT's shape
        "ors_" + "A" * 10_000,
        "",
    ],
)
async def test_a_bad_cookie_gets_401(database_url: str, tmp_path: Path, cookie: str) -> None:
    async with serving(database_url, tmp_path) as (client, _services):
        response = await client.get("/api/v1/users/me", headers=jar(cookie))
        assert response.status_code == 401
        assert response.json()["error"]["code"] == 401


async def test_logout_with_the_cookie_ends_the_session_and_clears_both_cookies(
    database_url: str, tmp_path: Path
) -> None:
    async with serving(database_url, tmp_path) as (client, _services):
        session, csrf = await browser_sign_in(client)
        # logout is unsafe too: without the CSRF token another site could sign us out
        assert (await client.post("/auth/logout", headers=jar(session, csrf))).status_code == 403
        response = await client.post(
            "/auth/logout", headers={**jar(session, csrf), "X-CSRF-Token": csrf}
        )
        assert response.status_code == 204
        cleared = set_cookies(response)
        assert set(cleared) == {"orch_session", "orch_csrf"}
        for header in cleared.values():
            assert value(header) == ""
            assert "Max-Age=0" in attributes(header)
        response = await client.get("/api/v1/users/me", headers=jar(session, csrf))
        assert response.status_code == 401
        # signing out of a session that is over already is refused, and clears the cookies
        for cookie in (session, "ors_" + "A" * 43, "garbage"):
            again = await client.post(
                "/auth/logout", headers={**jar(cookie, csrf), "X-CSRF-Token": csrf}
            )
            assert again.status_code == 401
            assert again.json()["error"]["code"] == 401
            assert set(set_cookies(again)) == {"orch_session", "orch_csrf"}


async def rotated(client: httpx.AsyncClient, session: str) -> str:
    """Read with the cookie until a response replaces it; the new cookie's value."""
    deadline = time.monotonic() + 10
    while True:
        response = await client.get("/api/v1/users/me", headers=jar(session))
        assert response.status_code == 200, response.text
        cookies = set_cookies(response)
        if "orch_session" in cookies:
            assert {"HttpOnly", "SameSite=Strict"} <= attributes(cookies["orch_session"])
            return value(cookies["orch_session"])
        assert time.monotonic() < deadline, "the cookie was never rotated"
        await asyncio.sleep(0.1)


async def test_the_cookie_rotates_and_an_old_one_after_the_grace_window_ends_the_session(
    database_url: str, tmp_path: Path
) -> None:
    async with serving(
        database_url,
        tmp_path,
        session_cookie_rotate_minutes=0.5 / 60,
        refresh_reuse_grace_seconds=0,
    ) as (client, _services):
        first, csrf = await browser_sign_in(client)
        second = await rotated(client, first)
        assert second != first
        # the CSRF token is the session's: it stays valid across rotations
        response = await client.post(
            TASKS, json={"title": "t"}, headers={**jar(second, csrf), "X-CSRF-Token": csrf}
        )
        assert response.status_code == 201, response.text
        # (on a slow machine this request may rotate the cookie again: a browser keeps the
        # newest, and so does this test, so that only `first` is ever sent used up)
        latest = set_cookies(response).get("orch_session")
        current = value(latest) if latest is not None else second
        # the first cookie again: a copy (no grace here); the whole session ends
        reused = await client.get("/api/v1/users/me", headers=jar(first))
        assert reused.status_code == 401
        assert "already used" in reused.json()["error"]["message"]
        assert (await client.get("/api/v1/users/me", headers=jar(current))).status_code == 401


async def test_an_old_cookie_within_the_grace_window_is_moved_to_its_successor(
    database_url: str, tmp_path: Path
) -> None:
    async with serving(
        database_url,
        tmp_path,
        session_cookie_rotate_minutes=0.5 / 60,
        refresh_reuse_grace_seconds=30,
    ) as (client, _services):
        first, _csrf = await browser_sign_in(client)
        second = await rotated(client, first)
        # a request of another tab, sent with the old cookie just before the rotation
        late = await client.get("/api/v1/users/me", headers=jar(first))
        assert late.status_code == 200
        assert value(set_cookies(late)["orch_session"]) == second
        assert (await client.get("/api/v1/users/me", headers=jar(second))).status_code == 200
