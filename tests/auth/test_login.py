from __future__ import annotations

import json
import threading
from typing import Literal

import httpx
import jwt
import pytest
from argon2 import PasswordHasher

from orchestrator.auth.passwords import Passwords
from orchestrator.auth.users import set_disabled
from orchestrator.services import Services
from tests.support.users import ADMIN_PASSWORD, PASSWORD, make_user


@pytest.mark.parametrize("path", ["/auth/login", "/api/v1/auth/login"])
async def test_login_returns_bearer_token(client: httpx.AsyncClient, path: str) -> None:
    response = await client.post(path, json={"username": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["access_token"]
    assert response.headers["cache-control"] == "no-store"


async def test_token_opens_protected_route(client: httpx.AsyncClient, services: Services) -> None:
    await make_user(services.db, "alice")
    response = await client.post("/auth/login", json={"username": "ALICE", "password": PASSWORD})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "admin", "password": "wrong-password"},
        {"username": "nobody", "password": "whatever-password"},
    ],
)
async def test_bad_credentials_get_401(
    client: httpx.AsyncClient, credentials: dict[str, str]
) -> None:
    response = await client.post("/auth/login", json=credentials)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid username or password"
    assert credentials["password"] not in response.text


@pytest.mark.parametrize(
    "body",
    [
        {"username": "admin"},
        {"username": "admin", "password": "x", "extra": 1},
        {"username": 5, "password": "x"},
        {"username": "a" * 151, "password": "x"},
        {"username": "admin", "password": "p" * 1025},
    ],
)
async def test_malformed_login_gets_422_without_echo(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    response = await client.post("/auth/login", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    assert all(set(d) == {"field", "reason"} for d in error["details"])
    assert "p" * 100 not in response.text
    assert "a" * 100 not in response.text


async def test_non_json_login_gets_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/login", content=b"username=admin", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422


class RecordingHasher(PasswordHasher):
    """The real argon2id hasher, noting which thread each hash or verify ran on."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[threading.Thread] = []

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.threads.append(threading.current_thread())
        return super().hash(password, salt=salt)

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.threads.append(threading.current_thread())
        return super().verify(hash, password)


@pytest.fixture
async def hasher(services: Services) -> RecordingHasher:
    recording = RecordingHasher()
    services.passwords = Passwords(recording)
    await services.passwords.warm_up()  # as the lifespan does: the dummy hash exists up front
    recording.threads.clear()
    return recording


async def test_wrong_password_unknown_and_disabled_users_get_the_same_401(
    client: httpx.AsyncClient, services: Services, hasher: RecordingHasher
) -> None:
    await make_user(services.db, "dave")
    await set_disabled(services.db, username="dave", disabled=True)
    attempts = {
        "wrong password": {"username": "admin", "password": "not-the-password"},
        "unknown user": {"username": "nobody", "password": "not-the-password"},
        "disabled user": {"username": "dave", "password": PASSWORD},
    }
    bodies = set()
    for case, credentials in attempts.items():
        before = len(hasher.threads)
        response = await client.post("/auth/login", json=credentials)
        assert response.status_code == 401, case
        assert response.headers["www-authenticate"] == "Bearer"
        error = response.json()["error"]
        assert error.pop("request_id") == response.headers["x-request-id"]
        bodies.add(json.dumps(error, sort_keys=True))
        # the same cost: exactly one argon2 verification, whatever the reason
        assert len(hasher.threads) == before + 1, case
    assert len(bodies) == 1


async def test_hashing_runs_off_the_event_loop(
    client: httpx.AsyncClient, hasher: RecordingHasher
) -> None:
    loop_thread = threading.current_thread()
    assert (
        await client.post("/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    ).is_success
    assert (
        await client.post("/auth/login", json={"username": "ghost", "password": "x" * 9})
    ).status_code == 401
    assert len(hasher.threads) == 2
    assert loop_thread not in hasher.threads


@pytest.mark.parametrize(
    "body",
    [
        {"username": "a" * 151, "password": "short-enough"},
        {"username": "admin", "password": "p" * 1025},
        {"username": "admin", "password": "p" * 200_000},
    ],
)
async def test_overlong_credentials_get_422_before_any_hash(
    client: httpx.AsyncClient, hasher: RecordingHasher, body: dict[str, str]
) -> None:
    response = await client.post("/auth/login", json=body)
    assert response.status_code == 422
    assert hasher.threads == []
    assert "aaaaaaaaaa" not in response.text
    assert "pppppppppp" not in response.text


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"", "application/json"),
        (b"[]", "application/json"),
        (b'"admin"', "application/json"),
        (b"null", "application/json"),
        (b'{"username": "admin", "password": "secret-value"', "application/json"),
        (b'{"username": ["admin"], "password": "secret-value"}', "application/json"),
        (b'{"username": "admin", "password": "secret-value", "role": "admin"}', "application/json"),
    ],
)
async def test_malformed_login_bodies_get_422_without_echo(
    client: httpx.AsyncClient, content: bytes, content_type: str
) -> None:
    response = await client.post(
        "/auth/login", content=content, headers={"Content-Type": content_type}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    assert error["details"]
    for detail in error["details"]:
        assert set(detail) == {"field", "reason"}
    assert "secret-value" not in response.text


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"username=admin&password=secret-value", "application/x-www-form-urlencoded"),
        (b'{"username": "admin", "password": "secret-value"}', "text/plain"),
    ],
)
async def test_login_bodies_that_are_not_json_get_415_without_echo(
    client: httpx.AsyncClient, content: bytes, content_type: str
) -> None:
    response = await client.post(
        "/auth/login", content=content, headers={"Content-Type": content_type}
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == 415
    assert "secret-value" not in response.text


async def test_login_sends_no_store_and_a_working_token(
    client: httpx.AsyncClient, services: Services
) -> None:
    await make_user(services.db, "Carol", role="viewer")
    response = await client.post("/auth/login", json={"username": "carol", "password": PASSWORD})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    token = response.json()["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    # the contract's claims, plus the session the token belongs to
    assert set(claims) == {"sub", "iss", "aud", "exp", "iat", "jti", "sid"}
    assert claims["exp"] - claims["iat"] == pytest.approx(30 * 60, abs=1)
    me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["username"] == "Carol"
    assert me.json()["role"] == "viewer"
