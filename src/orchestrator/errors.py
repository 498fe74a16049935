"""Our exceptions: what went wrong, in the domain's words, with the status it maps to.

`orchestrator.http.errors` turns them into the contract's envelope, in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class ApiError(Exception):
    """An error with a status code, shown to the client in the envelope."""

    status_code = 400
    default_message = "Bad request"

    def __init__(self, message: str | None = None, *, headers: Mapping[str, str] | None = None):
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.headers = dict(headers or {})


class Unauthorized(ApiError):
    status_code = 401
    default_message = "Not authenticated"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ApiError):
    status_code = 403
    default_message = "Not allowed"


class NotFound(ApiError):
    status_code = 404
    default_message = "Not found"


class Conflict(ApiError):
    status_code = 409
    default_message = "Conflict"


class PreconditionFailed(ApiError):
    status_code = 412
    default_message = "Precondition failed"


class PreconditionRequired(ApiError):
    status_code = 428
    default_message = "This request must be conditional: send If-Match"


class Unprocessable(ApiError):
    status_code = 422
    default_message = "Unprocessable request"

    def __init__(self, message: str | None = None, *, details: Sequence[Mapping[str, str]] = ()):
        super().__init__(message)
        self.details = list(details)


class ServiceUnavailable(ApiError):
    status_code = 503
    default_message = "The database is unavailable; try again shortly"
