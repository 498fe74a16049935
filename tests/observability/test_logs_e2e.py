"""A real server driven through logins, WebSockets, errors and a forced 500 with canary secrets:
no log line may carry a secret, and every request line carries its request id."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus, WebSocketException

from tests.support.servers import ServerProcess

pytestmark = pytest.mark.e2e

SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


async def websocket_attempt(url: str, **kwargs: Any) -> None:
    try:
        async with connect(url, open_timeout=5, **kwargs) as ws:
            await ws.send(json.dumps({"type": "ping"}))
            await asyncio.wait_for(ws.recv(), 5)
    except (InvalidStatus, WebSocketException, TimeoutError):
        pass  # /ws may refuse or not exist yet; the logs are what is checked


async def test_logs_carry_request_ids_and_no_secrets(tmp_path: Path) -> None:
    canaries = {
        "secret_key": f"canary-secret-key-{secrets.token_hex(24)}",
        "admin_password": f"canary-admin-password-{secrets.token_hex(8)}",
        "wrong_password": f"canary-wrong-password-{secrets.token_hex(8)}",
        "metrics_token": f"canary-metrics-token-{secrets.token_hex(8)}",
    }
    server = ServerProcess(
        env={
            "ORCH_ENVIRONMENT": "test",
            "ORCH_DATA_DIR": str(tmp_path / "data"),
            "ORCH_SECRET_KEY": canaries["secret_key"],
            "ORCH_ADMIN_PASSWORD": canaries["admin_password"],
            "ORCH_METRICS_TOKEN": canaries["metrics_token"],
            "ORCH_RATE_LIMIT_ENABLED": "true",
            "ORCH_RATE_LIMIT_LOGIN": "4/minute",
            "ORCH_REFRESH_REUSE_GRACE_SECONDS": "0",
            "ORCH_LOG_LEVEL": "DEBUG",
        },
        log_path=tmp_path / "server.log",
    )
    await asyncio.to_thread(server.start, 90.0)
    statuses: list[int] = []
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:

            async def call(method: str, url: str, **kwargs: Any) -> httpx.Response:
                response = await client.request(method, url, **kwargs)
                statuses.append(response.status_code)
                return response

            wrong = {"username": "admin", "password": canaries["wrong_password"]}
            assert (await call("POST", "/auth/login", json=wrong)).status_code == 401
            assert (await call("POST", "/api/v1/auth/login", json=wrong)).status_code == 401
            right = {"username": "admin", "password": canaries["admin_password"]}
            response = await call("POST", "/auth/login", json=right)
            assert response.status_code == 200
            token = response.json()["access_token"]
            canaries["token"] = token
            canaries["token_signature"] = token.rsplit(".", 1)[1]
            bearer = {"Authorization": f"Bearer {token}"}
            made = await call(
                "POST",
                "/api/v1/api-keys",
                json={"name": "canary", "read_only": True},
                headers=bearer,
            )
            assert made.status_code == 201
            canaries["api_key"] = made.json()["key"]
            key_auth = {"Authorization": f"Bearer {canaries['api_key']}"}
            assert (await call("GET", "/api/v1/users/me", headers=key_auth)).status_code == 200
            refused = await call("POST", "/api/v1/api-keys", json={"name": "x"}, headers=key_auth)
            assert refused.status_code == 403  # read-only
            assert (await call("GET", "/api/v1/api-keys", headers=bearer)).status_code == 200
            key_id = made.json()["id"]
            revoked = await call("DELETE", f"/api/v1/api-keys/{key_id}", headers=bearer)
            assert revoked.status_code == 204
            assert (await call("GET", "/api/v1/users/me", headers=key_auth)).status_code == 401
            canaries["wrong_api_key"] = "orch_" + "C" * 43 + "_CCCCCC"
            wrong_key = {"Authorization": f"Bearer {canaries['wrong_api_key']}"}
            assert (await call("GET", "/api/v1/users/me", headers=wrong_key)).status_code == 401
            canaries["refresh_token"] = response.json()["refresh_token"]
            refreshed = await call(
                "POST", "/auth/refresh", json={"refresh_token": canaries["refresh_token"]}
            )
            assert refreshed.status_code == 200
            canaries["rotated_refresh_token"] = refreshed.json()["refresh_token"]
            # used up now: presenting it again is reuse (logged as a 401 like any other)
            reused = await call(
                "POST", "/auth/refresh", json={"refresh_token": canaries["refresh_token"]}
            )
            assert reused.status_code == 401
            bogus_refresh = "ort_" + secrets.token_hex(20)[:43].ljust(43, "A")
            canaries["bogus_refresh_token"] = bogus_refresh
            await call("POST", "/auth/refresh", json={"refresh_token": bogus_refresh})
            session = await call("POST", "/auth/session", json=right)
            assert session.status_code == 204
            cookies = {
                h.split("=", 1)[0]: h.split(";", 1)[0].split("=", 1)[1]
                for h in session.headers.get_list("set-cookie")
            }
            canaries["session_cookie"] = cookies["orch_session"]
            canaries["csrf_cookie"] = cookies["orch_csrf"]
            session_cookie, csrf_cookie = cookies["orch_session"], cookies["orch_csrf"]
            jar = {"Cookie": f"orch_session={session_cookie}; orch_csrf={csrf_cookie}"}
            assert (await call("GET", "/api/v1/users/me", headers=jar)).status_code == 200
            refused = await call("POST", "/api/v1/collab/tasks", json={"title": "x"}, headers=jar)
            assert refused.status_code == 403  # no CSRF header
            wrong_cookie = "ors_" + "B" * 43
            canaries["wrong_cookie"] = wrong_cookie
            assert (
                await call(
                    "GET", "/api/v1/users/me", headers={"Cookie": f"orch_session={wrong_cookie}"}
                )
            ).status_code == 401
            logout = await call(
                "POST", "/auth/logout", headers={**jar, "X-CSRF-Token": cookies["orch_csrf"]}
            )
            assert logout.status_code == 204
            # over the login limit, with the right password in the body
            assert (await call("POST", "/auth/login", json=right)).status_code == 429
            malformed = {**right, "extra": canaries["wrong_password"]}
            assert (await call("POST", "/auth/login", json=malformed)).status_code == 422
            garbage = f'{{"password": "{canaries["admin_password"]}"'
            response = await call(
                "POST", "/auth/login", content=garbage, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 422
            response = await call(
                "GET", "/api/v1/nothing", headers={**bearer, "X-Request-ID": "canary-run.1"}
            )
            assert response.status_code == 404
            assert response.headers["x-request-id"] == "canary-run.1"
            response = await call("GET", f"/__test__/fail?token={token}", headers=bearer)
            assert response.status_code == 500
            assert (await call("GET", "/metrics", headers=bearer)).status_code == 401
            metrics_auth = {"Authorization": f"Bearer {canaries['metrics_token']}"}
            assert (await call("GET", "/metrics", headers=metrics_auth)).status_code == 200
            await call("GET", "/health", headers={"X-Request-ID": "not a safe id!"})

        await websocket_attempt(f"{server.ws_url}/ws?token={token}")
        await websocket_attempt(f"{server.ws_url}/ws", additional_headers=bearer)
        await websocket_attempt(f"{server.ws_url}/ws?token=not-a-valid-token")
        await websocket_attempt(f"{server.ws_url}/ws?token={canaries['api_key']}")
    finally:
        await asyncio.to_thread(server.stop)

    stdout = server.logs()
    devlog = (tmp_path / ".devlogs" / "orch-main.log").read_text()
    assert devlog.strip()
    for name, text in (("stdout", stdout), ("devlog", devlog)):
        for label, canary in canaries.items():
            assert canary not in text, f"{label} leaked into {name}"
        assert "eyJ" not in text, f"something token-shaped leaked into {name}"
        assert "not-a-valid-token" not in text
        for prefix in ("ort_", "ors_", "orch_"):
            assert prefix not in text, f"something credential-shaped ({prefix}) leaked into {name}"
        assert "$argon2" not in text, f"a password hash leaked into {name}"

    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    requests = [line for line in lines if line["event"] == "request"]
    assert len(requests) >= len(statuses)
    for line in requests:
        assert SAFE_ID.fullmatch(line["request_id"]), line
        assert {"method", "route", "status", "duration_ms", "user"} <= set(line)
    assert any(
        line["request_id"] == "canary-run.1" and line["user"] == "admin" for line in requests
    )
    assert {line["status"] for line in requests} >= {200, 401, 404, 422, 429, 500}

    failure = [line for line in lines if line["event"] == "unhandled_exception"]
    assert len(failure) == 1
    assert "Traceback" in failure[0]["exception"]
    assert "forced failure for tests" in failure[0]["exception"]
    assert SAFE_ID.fullmatch(failure[0]["request_id"])
    error_line = next(r for r in requests if r["status"] == 500)
    assert error_line["request_id"] == failure[0]["request_id"]

    websocket_lines = [line for line in lines if line["event"].startswith("websocket_")]
    assert len(websocket_lines) >= 3
    for line in websocket_lines:
        assert SAFE_ID.fullmatch(line["request_id"]), line
        assert "token" not in line["path"]
    assert not [line for line in lines if "WebSocket /ws" in line["event"]]
