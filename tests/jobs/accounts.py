"""Users for jobs/tasks tests without argon2: tokens issued directly (login has its own tests)."""

from __future__ import annotations

from orchestrator.auth.users import Role, create_user
from orchestrator.services import Services


def bearer(services: Services, username: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {services.tokens.issue(username)}"}


async def account(services: Services, username: str, role: Role = "member") -> dict[str, str]:
    """A new user of `role` and its Authorization header (the password is never used)."""
    await create_user(services.db, username=username, role=role, password_hash="unused")
    return bearer(services, username)


def admin_auth(services: Services) -> dict[str, str]:
    return bearer(services, "admin")
