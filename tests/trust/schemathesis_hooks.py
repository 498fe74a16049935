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


def _fits_64_bits(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**64
    if isinstance(value, dict):
        return all(_fits_64_bits(v) for v in value.values())
    if isinstance(value, list):
        return all(_fits_64_bits(v) for v in value)
    return True


@schemathesis.hook
def filter_body(context: Any, body: Any) -> bool:
    """Skip bodies with integers beyond 64 bits inside free-form JSON (`payload`, `result`).

    The API refuses those with a documented 422 (canonical JSON is limited to 64-bit integers),
    a limit JSON Schema cannot state for values nested in an arbitrary object.
    """
    return _fits_64_bits(body)
