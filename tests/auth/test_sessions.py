"""Refresh tokens with rotation, reuse detection and a grace window; logout; sessions listed and
ended; expiry and revocation. On SQLite and PostgreSQL, through the HTTP API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from orchestrator.app import create_app
from orchestrator.auth.users import set_disabled, set_password
from orchestrator.db.changelog import latest_revision
from orchestrator.services import Services
from tests.support.settings import make_settings
from tests.support.users import ADMIN_PASSWORD, PASSWORD, make_user


@asynccontextmanager
async def serving(
    database_url: str, tmp_path: Path, **overrides: object
) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    app: FastAPI = create_app(make_settings(database_url, tmp_path / "data", **overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client, app.state.services


async def sign_in(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD, **headers: str
) -> dict[str, Any]:
    response = await client.post(
        "/auth/login", json={"username": username, "password": password}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/auth/refresh", json={"refresh_token": token})


def bearer(body: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {body['access_token']}"}


def assert_401(response: httpx.Response, message: str | None = None) -> None:
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == 401
    assert error["request_id"] == response.headers["x-request-id"]
    if message is not None:
        assert message in error["message"], error


async def heard(services: Services) -> None:
    """What was committed has reached this process's caches through the change feed."""
    assert await services.feed.wait_past(await latest_revision(services.db), within=10)


async def me(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.get("/api/v1/users/me", headers=bearer(body))


async def test_login_returns_a_refresh_token_and_the_access_token_names_its_session(
    database_url: str, tmp_path: Path
) -> None:
    async with serving(database_url, tmp_path) as (client, services):
        await make_user(services.db, "ann")
        body = await sign_in(client, "ann")
        assert set(body) == {
            "access_token",
            "token_type",
            "expires_in",
            "refresh_token",
            "refresh_expires_in",
        }
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == pytest.approx(30 * 60, abs=2)
        assert body["refresh_expires_in"] == pytest.approx(14 * 86400, abs=2)
        assert body["refresh_token"].startswith("ort_")
        assert len(body["refresh_token"]) == 47
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert set(claims) == {"sub", "iss", "aud", "exp", "iat", "jti", "sid"}
        # the same body on the contract's second path
        other = await client.post(
            "/api/v1/auth/login", json={"username": "ann", "password": PASSWORD}
        )
        assert set(other.json()) == set(body)
        assert (
            jwt.decode(other.json()["access_token"], options={"verify_signature": False})["sid"]
            != claims["sid"]
        )


async def test_refresh_rotates_within_the_session_and_uses_the_token_up(
    database_url: str, tmp_path: Path
) -> None:
    async with serving(database_url, tmp_path, refresh_reuse_grace_seconds=0) as (
        client,
        services,
    ):
        await make_user(services.db, "bob")
        first = await sign_in(client, "bob")
        response = await refresh(client, first["refresh_token"])
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        second = response.json()
        assert set(second) == set(first)
        assert second["refresh_token"] != first["refresh_token"]
        assert second["access_token"] != first["access_token"]
        sid = jwt.decode(first["access_token"], options={"verify_signature": False})["sid"]
        assert jwt.decode(second["access_token"], options={"verify_signature": False})["sid"] == sid
        assert (await me(client, second)).status_code == 200
        third = (await refresh(client, second["refresh_token"])).json()
        assert (await me(client, third)).json()["username"] == "bob"

        # the first token again, long after its rotation (no grace here): reuse
        assert_401(await refresh(client, first["refresh_token"]), "already used")
        # the whole family is revoked: its newest refresh token and every access token
        assert_401(await refresh(client, third["refresh_token"]), "revoked")
        for body in (first, second, third):
            assert_401(await me(client, body), "revoked")
        # a new login is a new session, unaffected
        assert (await me(client, await sign_in(client, "bob"))).status_code == 200


async def test_a_used_token_within_the_grace_window_gets_the_same_pair_again(
    database_url: str, tmp_path: Path
) -> None:
    async with serving(database_url, tmp_path, refresh_reuse_grace_seconds=30) as (
        client,
        services,
    ):
        await make_user(services.db, "cat")
        first = await sign_in(client, "cat")
        # two tabs refresh with the same token at once
        one, two = await asyncio.gather(
            refresh(client, first["refresh_token"]), refresh(client, first["refresh_token"])
        )
        assert one.status_code == two.status_code == 200, (one.text, two.text)
        assert one.json()["refresh_token"] == two.json()["refresh_token"]
        assert one.json()["access_token"] == two.json()["access_token"]
        # later, within the window: still the same pair, and nothing revoked
        again = await refresh(client, first["refresh_token"])
        assert again.json()["refresh_token"] == one.json()["refresh_token"]
        assert again.json()["access_token"] == one.json()["access_token"]
        assert (await me(client, one.json())).status_code == 200
        nxt = await refresh(client, one.json()["refresh_token"])
        assert nxt.status_code == 200
        # one session, not several
        listed = await client.get("/api/v1/sessions", headers=bearer(nxt.json()))
        assert len(listed.json()["sessions"]) == 1


async def test_logout_ends_the_session_of_the_access_token(
    database_url: str, tmp_path: Path
) -> None:
    async with serving(database_url, tmp_path) as (client, services):
        await make_user(services.db, "dan")
        kept = await sign_in(client, "dan")
        body = await sign_in(client, "dan")
        response = await client.post("/auth/logout", headers=bearer(body))
        assert response.status_code == 204
        assert response.content == b""
        assert_401(await me(client, body), "revoked")
        assert_401(await refresh(client, body["refresh_token"]), "revoked")
        assert_401(await client.post("/auth/logout", headers=bearer(body)))
        # the user's other session goes on
        assert (await me(client, kept)).status_code == 200
        # logout with a refresh token of the same user ends that session too
        third = await sign_in(client, "dan")
        response = await client.post(
            "/auth/logout", headers=bearer(kept), json={"refresh_token": third["refresh_token"]}
        )
        assert response.status_code == 204
        assert_401(await refresh(client, third["refresh_token"]))
        assert_401(await me(client, kept))
        assert_401(await client.post("/auth/logout"))


async def test_sessions_are_listed_and_ended_one_by_one(database_url: str, tmp_path: Path) -> None:
    async with serving(database_url, tmp_path) as (client, services):
        await make_user(services.db, "eva")
        await make_user(services.db, "fay")
        laptop = await sign_in(client, "eva", **{"User-Agent": "laptop/1.0"})
        phone = await sign_in(client, "eva", **{"User-Agent": "phone/2.0"})
        other = await sign_in(client, "fay")
        response = await client.get("/api/v1/sessions", headers=bearer(laptop))
        assert response.status_code == 200
        listed = response.json()["sessions"]
        assert [s["user_agent"] for s in listed] == ["phone/2.0", "laptop/1.0"]
        assert [s["current"] for s in listed] == [False, True]
        assert set(listed[0]) == {
            "id",
            "username",
            "kind",
            "created_at",
            "last_used_at",
            "expires_at",
            "user_agent",
            "client_address",
            "current",
        }
        assert listed[0]["client_address"] == "127.0.0.1"
        assert listed[0]["kind"] == "token"
        phone_id = listed[0]["id"]

        # someone else's session is not found; a member may not ask for another user's list
        fay_id = (await client.get("/api/v1/sessions", headers=bearer(other))).json()["sessions"][
            0
        ]["id"]
        response = await client.delete(f"/api/v1/sessions/{fay_id}", headers=bearer(laptop))
        assert response.status_code == 404
        response = await client.get("/api/v1/sessions?username=fay", headers=bearer(laptop))
        assert response.status_code == 403

        response = await client.delete(f"/api/v1/sessions/{phone_id}", headers=bearer(laptop))
        assert response.status_code == 204
        assert_401(await me(client, phone), "revoked")
        assert_401(await refresh(client, phone["refresh_token"]))
        assert (await me(client, laptop)).status_code == 200
        again = await client.delete(f"/api/v1/sessions/{phone_id}", headers=bearer(laptop))
        assert again.status_code == 404
        listed = (await client.get("/api/v1/sessions", headers=bearer(laptop))).json()["sessions"]
        assert [s["id"] for s in listed] != [phone_id]
        assert len(listed) == 1

        # admins see and end anyone's
        admin = await sign_in(client, "admin", ADMIN_PASSWORD)
        response = await client.get("/api/v1/sessions?username=fay", headers=bearer(admin))
        assert [s["id"] for s in response.json()["sessions"]] == [fay_id]
        assert (
            await client.get("/api/v1/sessions?username=ghost", headers=bearer(admin))
        ).status_code == 404
        response = await client.delete(
            f"/api/v1/sessions/{fay_id}?username=fay", headers=bearer(admin)
        )
        assert response.status_code == 204
        assert_401(await me(client, other))
        response = await client.delete("/api/v1/sessions/not-a-session-id", headers=bearer(admin))
        assert response.status_code == 404


async def test_password_change_and_disable_end_every_session(
    database_url: str, tmp_path: Path
) -> None:
    async with serving(database_url, tmp_path) as (client, services):
        await make_user(services.db, "gus")
        body = await sign_in(client, "gus")
        await set_password(
            services.db, username="gus", password_hash=await services.passwords.hash("new pass 1")
        )
        await heard(services)
        assert_401(await me(client, body))
        assert_401(await refresh(client, body["refresh_token"]), "revoked")

        body = await sign_in(client, "gus", "new pass 1")
        await set_disabled(services.db, username="gus", disabled=True)
        await set_disabled(services.db, username="gus", disabled=False)
        await heard(services)
        assert_401(await refresh(client, body["refresh_token"]), "revoked")
        assert_401(await me(client, body))


async def test_a_refresh_token_expires_unused(database_url: str, tmp_path: Path) -> None:
    idle_seconds = 1.0
    async with serving(database_url, tmp_path, refresh_idle_days=idle_seconds / 86400) as (
        client,
        services,
    ):
        await make_user(services.db, "hal")
        body = await sign_in(client, "hal")
        assert body["refresh_expires_in"] <= 1
        lister = await sign_in(client, "admin", ADMIN_PASSWORD)
        # the session leaves the list once its refresh token has expired unused
        deadline = time.monotonic() + 10
        while (await client.get("/api/v1/sessions?username=hal", headers=bearer(lister))).json()[
            "sessions"
        ]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert_401(await refresh(client, body["refresh_token"]), "expired")


async def test_a_session_ends_at_its_maximum_age_however_it_is_refreshed(
    database_url: str, tmp_path: Path
) -> None:
    max_seconds = 2.0
    async with serving(database_url, tmp_path, session_max_days=max_seconds / 86400) as (
        client,
        services,
    ):
        await make_user(services.db, "ida")
        started = time.time()
        body = await sign_in(client, "ida")
        signed_in = time.time()  # the session began before this (a loaded machine's argon2 is slow)
        assert body["refresh_expires_in"] <= max_seconds
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert claims["exp"] <= signed_in + max_seconds + 1  # access tokens end with the session
        deadline = time.monotonic() + 15
        while True:
            response = await refresh(client, body["refresh_token"])
            if response.status_code != 200:
                break
            body = response.json()
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert_401(response, "expired")
        assert time.time() >= started + max_seconds - 1


@pytest.mark.parametrize(
    ("case", "payload", "status"),
    [
        ("an access token", "ACCESS", 401),
        ("an api key", "orch_" + "a" * 43 + "_abcdef", 401),
        ("garbage", "ort_not-a-token", 401),
        ("a made-up token", "ort_" + "A" * 43, 401),
        ("empty", "", 422),
        ("huge", "ort_" + "A" * 100_000, 422),
        ("a number", 12, 422),
    ],
)
async def test_refresh_refuses_what_is_not_a_refresh_token(
    database_url: str, tmp_path: Path, case: str, payload: object, status: int
) -> None:
    async with serving(database_url, tmp_path) as (client, _services):
        if payload == "ACCESS":
            payload = (await sign_in(client, "admin", ADMIN_PASSWORD))["access_token"]
        response = await client.post("/auth/refresh", json={"refresh_token": payload})
        assert response.status_code == status, (case, response.text)
        assert response.json()["error"]["code"] == status


async def test_a_refresh_token_is_not_an_access_token(database_url: str, tmp_path: Path) -> None:
    async with serving(database_url, tmp_path) as (client, _services):
        body = await sign_in(client, "admin", ADMIN_PASSWORD)
        response = await client.get(
            "/api/v1/users/me", headers={"Authorization": f"Bearer {body['refresh_token']}"}
        )
        assert_401(response, "refresh token")
        huge = {"Authorization": "Bearer " + "x" * 5000}
        assert_401(await client.get("/api/v1/users/me", headers=huge))
