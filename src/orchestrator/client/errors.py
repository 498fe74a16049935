"""What the server refused, as exceptions carrying its error envelope."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A non-2xx answer; `status_code` and the envelope's `message`."""

    def __init__(self, status_code: int, message: str, body: Any = None) -> None:
        super().__init__(f"{status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.body = body


class NotFoundError(ApiError):
    """404: no such job or task."""


class ConflictError(ApiError):
    """409: an illegal transition, or a lease that is no longer held."""


def error_for(status_code: int, body: Any) -> ApiError:
    message = ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = str(body["error"].get("message", ""))
    kind = {404: NotFoundError, 409: ConflictError}.get(status_code, ApiError)
    return kind(status_code, message or f"HTTP {status_code}", body)
