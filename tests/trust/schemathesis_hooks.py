"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS): a token from a real login."""

from __future__ import annotations

import os
from typing import Any

import httpx
import schemathesis


@schemathesis.auth()
class LoginToken:
    """Log in as the fuzzing user; schemathesis refreshes the token on a 401."""

    def get(self, case: Any, context: Any) -> str:
        response = httpx.post(
            f"{os.environ['ORCH_FUZZ_BASE_URL']}/auth/login",
            json={
                "username": os.environ["ORCH_FUZZ_USERNAME"],
                "password": os.environ["ORCH_FUZZ_PASSWORD"],
            },
            timeout=10,
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
