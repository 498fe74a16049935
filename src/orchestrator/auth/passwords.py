"""argon2id password hashing, always off the event loop."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Passwords:
    """Hash and verify; unknown users are checked against a dummy hash at the same cost."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None

    def hash_sync(self, password: str) -> str:
        return self._hasher.hash(password)

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    def _verify_sync(self, password_hash: str | None, password: str) -> bool:
        if password_hash is None:
            if self._dummy_hash is None:
                self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
            password_hash = self._dummy_hash
            real = False
        else:
            real = True
        try:
            return self._hasher.verify(password_hash, password) and real
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True when `password` matches; `None` means no such user (same cost, always False)."""
        return await asyncio.to_thread(self._verify_sync, password_hash, password)

    async def warm_up(self) -> None:
        """Compute the dummy hash before the first login asks for it."""
        await self.verify(None, "warm-up")
