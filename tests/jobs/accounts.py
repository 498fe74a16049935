"""Moved to `tests.support.users`; kept while other branches still import from here."""

from tests.support.users import account, admin_auth, bearer

__all__ = ["account", "admin_auth", "bearer"]
