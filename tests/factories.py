"""Moved to `tests.support.users`; kept while other branches still import from here."""

from tests.support.users import (
    ADMIN_PASSWORD,
    PASSWORD,
    admin_headers,
    login,
    make_user,
    user_headers,
)

__all__ = ["ADMIN_PASSWORD", "PASSWORD", "admin_headers", "login", "make_user", "user_headers"]
