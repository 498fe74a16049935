"""Refuse request bodies that are not JSON with 415, before any route reads them."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.errors import error_response


def is_json(content_type: bytes) -> bool:
    """`application/json` or `application/*+json`, with an optional UTF-8 charset."""
    media, _, params = content_type.decode("latin-1").partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        return False
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            return False
    return True


class JsonContentTypeMiddleware:
    """Every request that carries a body must say it is JSON (UTF-8)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        has_body = False
        content_type: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                has_body = value.strip() not in (b"0", b"")
            elif name == b"transfer-encoding":
                has_body = True
            elif name == b"content-type":
                content_type = value
        if has_body and (content_type is None or not is_json(content_type)):
            response = error_response(
                scope, 415, "The request body must be JSON (Content-Type: application/json)"
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
