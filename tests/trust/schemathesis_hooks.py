"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS): a token from a real login."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import httpx
import schemathesis

from orchestrator.schedules.cron import InvalidSchedule, NeverFires, parse_schedule


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


def _cron_fires(body: Any) -> bool:
    if not isinstance(body, dict) or not isinstance(body.get("cron"), str):
        return True
    try:
        parse_schedule(body["cron"], "UTC", now=datetime.now(UTC))
    except NeverFires:
        return False
    except InvalidSchedule:
        return True  # a cron the schema's pattern refuses too: negative data, kept
    return True


def _log_lines_fit(body: Any) -> bool:
    if not isinstance(body, dict) or not isinstance(body.get("lines"), list):
        return True
    return all(
        not isinstance(line, str) or len(line.encode("utf-8", "surrogatepass")) <= 4096
        for line in body["lines"]
    )


@schemathesis.hook
def filter_body(context: Any, body: Any) -> bool:
    """Skip bodies the API refuses with a documented 422 for a reason JSON Schema cannot state.

    Integers beyond 64 bits inside free-form JSON (`payload`, `result`): canonical JSON is
    limited to 64-bit integers, a limit no schema can state for values nested in an arbitrary
    object. A schedule's `cron` that matches the schema's pattern but names a date that never
    comes (`0 0 30 2 *`): a pattern can state each field's range, not the length of months.
    A log line of at most 4,096 characters but more than 4,096 bytes of UTF-8: a schema
    counts characters.
    """
    return _fits_64_bits(body) and _cron_fires(body) and _log_lines_fit(body)
