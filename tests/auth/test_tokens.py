"""Attacks on the bearer token: every one gets 401 in the envelope with `WWW-Authenticate: Bearer`.

One app per backend serves the whole module (each case only sends a request).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import jwt
import pytest
import pytest_asyncio
from fastapi import FastAPI

from orchestrator.app import create_app
from orchestrator.auth.users import set_disabled, set_password
from orchestrator.db.changelog import latest_revision
from orchestrator.db.migrate import upgrade
from orchestrator.services import Services
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
)
from tests.support.settings import make_settings
from tests.support.users import PASSWORD, login, make_user

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = "module-secret-key-" + "k" * 64  # long enough for HS512 too
ISSUER = "orchestrator"
AUDIENCE = "orchestrator-api"


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def module_backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "postgres":
        require_postgres()
    return name


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_app(
    module_backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FastAPI]:
    tmp: Path = tmp_path_factory.mktemp("tokens")
    if module_backend == "sqlite":
        url = f"sqlite:///{tmp / 'orchestrator.db'}"
    else:
        url = await create_postgres_database()
    try:
        await asyncio.to_thread(upgrade, url)
        application = create_app(make_settings(url, tmp / "data", secret_key=SECRET))
        async with application.router.lifespan_context(application):
            services: Services = application.state.services
            for name, role in (("alice", "member"), ("vera", "viewer"), ("walt", "worker")):
                await make_user(services.db, name, role)  # type: ignore[arg-type]
            yield application
    finally:
        if module_backend == "postgres":
            await drop_postgres_database(url)


@pytest_asyncio.fixture(loop_scope="module")
async def client(shared_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=shared_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def claims(**changes: object) -> dict[str, object]:
    now = time.time()
    base: dict[str, object] = {
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": round(now, 6),  # as the service issues them: sub-second
        "exp": int(now) + 600,
        "jti": uuid.uuid4().hex,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, object], *, key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, key, algorithm=algorithm)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict[str, object], payload: dict[str, object], signature: bytes) -> str:
    head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(payload).encode())
    return head + "." + _b64(signature)


def _hmac_token(header: dict[str, object], payload: dict[str, object]) -> str:
    head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(payload).encode())
    mac = hmac.new(SECRET.encode(), head.encode(), hashlib.sha256).digest()
    return head + "." + _b64(mac)


def _tamper_signature(token: str) -> str:
    head, _, signature = token.rpartition(".")
    return head + "." + ("A" if signature[0] != "A" else "B") + signature[1:]


def _tamper_payload(token: str) -> str:
    header, _, signature = token.split(".")
    payload = _b64(json.dumps(claims(sub="admin")).encode())
    return f"{header}.{payload}.{signature}"


def _without(claim: str) -> str:
    return "Bearer " + sign(claims(**{claim: None}))


AUTHORIZATION: dict[str, Callable[[], str | None]] = {
    "missing": lambda: None,
    "empty": lambda: "",
    "scheme only": lambda: "Bearer",
    "scheme and spaces": lambda: "Bearer    ",
    "basic scheme": lambda: "Basic YWxpY2U6c2VjcmV0",
    "token without scheme": lambda: sign(claims()),
    "not a jwt": lambda: "Bearer not-a-jwt",
    "two segments": lambda: "Bearer abc.def",
    "garbage segments": lambda: "Bearer a.b.c",
    "expired": lambda: "Bearer " + sign(claims(iat=int(time.time()) - 900, exp=time.time() - 60)),
    "tampered signature": lambda: "Bearer " + _tamper_signature(sign(claims())),
    "tampered payload": lambda: "Bearer " + _tamper_payload(sign(claims())),
    "alg none": lambda: "Bearer " + handmade({"alg": "none", "typ": "JWT"}, claims(), b""),
    "alg None spelled": lambda: "Bearer " + handmade({"alg": "None"}, claims(), b""),
    "HS512 with the right secret": lambda: "Bearer " + sign(claims(), algorithm="HS512"),
    "RS256 header, HMAC with the secret": lambda: (
        "Bearer " + _hmac_token({"alg": "RS256", "typ": "JWT"}, claims())
    ),
    "another secret": lambda: "Bearer " + sign(claims(), key="another-secret-" + "z" * 32),
    "wrong audience": lambda: "Bearer " + sign(claims(aud="someone-else")),
    "audience list": lambda: "Bearer " + sign(claims(aud=[AUDIENCE, "other"])),
    "wrong issuer": lambda: "Bearer " + sign(claims(iss="evil")),
    "issued in the future": lambda: "Bearer " + sign(claims(iat=int(time.time()) + 600)),
    "unknown user": lambda: "Bearer " + sign(claims(sub="mallory")),
    "empty subject": lambda: "Bearer " + sign(claims(sub="")),
    **{
        f"no {claim}": functools.partial(_without, claim)
        for claim in ("sub", "iss", "aud", "exp", "iat", "jti")
    },
}


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["type"] == "http_exception"
    assert error["code"] == 401
    assert error["path"] == "/api/v1/users/me"
    assert error["request_id"] == response.headers["x-request-id"]


async def test_a_valid_token_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/v1/users/me", headers={"Authorization": "Bearer " + sign(claims())}
    )
    assert response.status_code == 200
    assert response.json()["username"] == "alice"


async def test_expiry_within_the_leeway_is_tolerated(client: httpx.AsyncClient) -> None:
    token = sign(claims(exp=int(time.time()) - 3))
    response = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


@pytest.mark.parametrize("case", list(AUTHORIZATION))
async def test_bad_token_gets_401(client: httpx.AsyncClient, case: str) -> None:
    value = AUTHORIZATION[case]()
    headers = {} if value is None else {"Authorization": value}
    assert_unauthorized(await client.get("/api/v1/users/me", headers=headers))


async def test_token_of_a_disabled_user_gets_401(
    client: httpx.AsyncClient, shared_app: FastAPI
) -> None:
    services: Services = shared_app.state.services
    await make_user(services.db, "dora")
    headers = await login(client, "dora")
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200
    await set_disabled(services.db, username="dora", disabled=True)
    await _until_unauthorized(client, services, headers)


async def test_password_change_revokes_earlier_tokens_only(
    client: httpx.AsyncClient, shared_app: FastAPI
) -> None:
    services: Services = shared_app.state.services
    await make_user(services.db, "pat")
    old = await login(client, "pat")
    assert (await client.get("/api/v1/users/me", headers=old)).status_code == 200
    new_password = "a brand new password"
    await set_password(
        services.db, username="pat", password_hash=await services.passwords.hash(new_password)
    )
    await _until_unauthorized(client, services, old)
    new = await login(client, "pat", new_password)
    assert (await client.get("/api/v1/users/me", headers=new)).status_code == 200
    refused = await client.post("/auth/login", json={"username": "pat", "password": PASSWORD})
    assert refused.status_code == 401


async def test_disable_then_enable_keeps_earlier_tokens_revoked(
    client: httpx.AsyncClient, shared_app: FastAPI
) -> None:
    services: Services = shared_app.state.services
    await make_user(services.db, "eve")
    old = await login(client, "eve")
    await set_disabled(services.db, username="eve", disabled=True)
    await set_disabled(services.db, username="eve", disabled=False)
    await _until_unauthorized(client, services, old)
    assert (await client.get("/api/v1/users/me", headers=await login(client, "eve"))).is_success


async def _until_unauthorized(
    client: httpx.AsyncClient, services: Services, headers: dict[str, str]
) -> None:
    """The change reaches the process's user cache through the change feed."""
    assert await services.feed.wait_past(await latest_revision(services.db), within=10)
    assert_unauthorized(await client.get("/api/v1/users/me", headers=headers))


@pytest.mark.parametrize(
    ("user", "role"), [("vera", "viewer"), ("walt", "worker"), ("alice", "member")]
)
async def test_role_dependency_gets_403_in_the_envelope(
    client: httpx.AsyncClient, user: str, role: str
) -> None:
    headers = await login(client, user)
    me = await client.get("/api/v1/users/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["role"] == role
    response = await client.get("/api/v1/users", headers=headers)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["type"] == "http_exception"
    assert error["code"] == 403
    assert error["request_id"] == response.headers["x-request-id"]


async def test_admin_lists_users_without_hashes(client: httpx.AsyncClient) -> None:
    from tests.support.users import admin_headers

    response = await client.get("/api/v1/users", headers=await admin_headers(client))
    assert response.status_code == 200
    users = {u["username"]: u for u in response.json()["users"]}
    assert {"admin", "alice", "vera", "walt"} <= set(users)
    assert set(users["alice"]) == {"id", "username", "role", "disabled", "created_at"}
    assert users["alice"]["created_at"].endswith("+00:00")
    assert "argon2" not in response.text
