"""Every error is the contract's envelope, with the request id of its response."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import structlog
from fastapi import FastAPI

from tests.support.users import ADMIN_PASSWORD

MIB = 1024 * 1024


def assert_envelope(
    response: httpx.Response, status: int, path: str, method: str
) -> dict[str, object]:
    assert response.status_code == status, response.text
    error: dict[str, object] = response.json()["error"]
    assert error["code"] == status
    assert error["path"] == path
    assert error["method"] == method
    assert error["request_id"] == response.headers["x-request-id"]
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


async def test_incoming_request_id_is_echoed_and_a_missing_one_generated(
    client: httpx.AsyncClient,
) -> None:
    given = await client.get("/nope", headers={"X-Request-ID": "trace-42"})
    assert assert_envelope(given, 404, "/nope", "GET")["request_id"] == "trace-42"
    made = await client.get("/nope")
    assert made.headers["x-request-id"]
    unsafe = await client.get("/nope", headers={"X-Request-ID": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"
    assert (
        assert_envelope(unsafe, 404, "/nope", "GET")["request_id"] == unsafe.headers["x-request-id"]
    )


async def test_validation_error_lists_fields_and_reasons_only(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/login", json={"username": 12345678, "password": "hunter2-secret"}
    )
    error = assert_envelope(response, 422, "/api/v1/auth/login", "POST")
    assert error["type"] == "validation_error"
    assert error["details"] == [{"field": "username", "reason": "Input should be a valid string"}]
    assert "12345678" not in response.text
    assert "hunter2-secret" not in response.text


async def test_body_over_the_limit_with_content_length_gets_413_unread(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/auth/login", content=b"x" * (MIB + 1), headers={"Content-Type": "application/json"}
    )
    error = assert_envelope(response, 413, "/auth/login", "POST")
    assert error["type"] == "http_exception"


async def test_announced_length_alone_gets_413(app: FastAPI) -> None:
    """The body is never read: the app answers on the header before asking for any of it."""
    received: list[object] = []
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        received.append(1)
        return {"type": "http.request", "body": b"", "more_body": True}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/auth/login",
        "raw_path": b"/auth/login",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-length", str(50 * MIB).encode()), (b"host", b"t")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 413
    assert received == []


async def test_streamed_body_over_the_limit_gets_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"x" * 64 * 1024  # 2.5 MiB in all, no Content-Length

    response = await client.post(
        "/auth/login", content=chunks(), headers={"Content-Type": "application/json"}
    )
    error = assert_envelope(response, 413, "/auth/login", "POST")
    assert "larger than" in str(error["message"])


async def test_body_just_under_the_limit_is_read(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/login",
        content=b'{"username": "admin", "password": "' + b"p" * 1100 + b'"}' + b" " * (MIB - 2000),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422  # read and parsed: the password is too long


async def test_unexpected_exception_gets_500_without_trace_and_is_logged(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    async def explode() -> None:
        raise RuntimeError("kaboom: internal detail")

    app.add_api_route("/test-only/explode", explode, methods=["GET"])
    with structlog.testing.capture_logs() as logs:
        response = await client.get("/test-only/explode", headers={"X-Request-ID": "boom-1"})
    error = assert_envelope(response, 500, "/test-only/explode", "GET")
    assert error["type"] == "internal_server_error"
    assert error["request_id"] == "boom-1"
    assert "kaboom" not in response.text
    assert "Traceback" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    [logged] = [e for e in logs if e["event"] == "unhandled_exception"]
    assert isinstance(logged["exc_info"], RuntimeError)
    assert "kaboom" in str(logged["exc_info"])
    assert logged["log_level"] == "error"


@pytest.mark.parametrize("path", ["/api/v1/users/me", "/api/v1/users"])
async def test_protected_routes_without_token_get_401_envelope(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert assert_envelope(response, 401, path, "GET")["type"] == "http_exception"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_security_headers_and_no_server_header(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert "server" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"
