"""Moved to `tests.support.apps`; kept while other branches still import from here."""

from tests.support.apps import client_for, running_app, services_of

__all__ = ["client_for", "running_app", "services_of"]
