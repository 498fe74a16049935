"""Small factories for test data: users and their tokens."""

from __future__ import annotations

import httpx

from orchestrator.auth.users import Role, create_user
from orchestrator.services import Services

ADMIN_PASSWORD = "admin-test-password"
PASSWORD = "correct horse battery staple"


async def make_user(
    services: Services, username: str, role: Role = "member", password: str = PASSWORD
) -> None:
    """Create a user directly in the database (hashing as the CLI does)."""
    await create_user(
        services.db,
        username=username,
        role=role,
        password_hash=await services.passwords.hash(password),
    )


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
    await make_user(services, username, role)
    return await login(client, username)


async def admin_headers(client: httpx.AsyncClient) -> dict[str, str]:
    return await login(client, "admin", ADMIN_PASSWORD)
