"""Moved to `tests.support.servers`; kept while other branches still import from here."""

from tests.support.servers import ServerProcess, free_port

__all__ = ["ServerProcess", "free_port"]
