"""Users for tests: one factory that stores them as the CLI does, and their credentials."""

from __future__ import annotations

import httpx

from orchestrator.auth.passwords import Passwords
from orchestrator.auth.users import Role, create_user
from orchestrator.db import Database
from orchestrator.services import Services

ADMIN_PASSWORD = "admin-test-password"
PASSWORD = "correct horse battery staple"
_NO_PASSWORD = "no password signs in"  # not an argon2 hash: nothing verifies against it

_passwords = Passwords()


async def make_user(
    db: Database, username: str, role: Role = "member", *, password: str | None = PASSWORD
) -> None:
    """A new user of `role`; with `password=None` it has none that signs in (tokens only,
    and no argon2 hashing, for tests that are not about logging in)."""
    password_hash = _NO_PASSWORD if password is None else await _passwords.hash(password)
    await create_user(db, username=username, role=role, password_hash=password_hash)


def bearer(services: Services, username: str) -> dict[str, str]:
    """An Authorization header with a token the app issued to `username`."""
    return {"Authorization": f"Bearer {services.tokens.issue(username)}"}


async def account(services: Services, username: str, role: Role = "member") -> dict[str, str]:
    """A new user of `role` (no password) and its Authorization header."""
    await make_user(services.db, username, role, password=None)
    return bearer(services, username)


def admin_auth(services: Services) -> dict[str, str]:
    return bearer(services, "admin")


async def login(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD
) -> dict[str, str]:
    """Log in over HTTP; returns the Authorization header."""
    response = await client.post("/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def user_headers(
    client: httpx.AsyncClient, services: Services, username: str, role: Role = "member"
) -> dict[str, str]:
    """A new user of `role`, logged in."""
    await make_user(services.db, username, role)
    return await login(client, username)


async def admin_headers(client: httpx.AsyncClient) -> dict[str, str]:
    return await login(client, "admin", ADMIN_PASSWORD)
