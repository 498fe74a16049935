"""Persistence: the database port, its SQLite and PostgreSQL backends, migrations, the
revision counter and change log, and the feed that follows the log."""

from orchestrator.db.database import (
    ConstraintViolation,
    Database,
    DatabaseUnavailable,
    Row,
    Transaction,
    open_database,
)

__all__ = [
    "ConstraintViolation",
    "Database",
    "DatabaseUnavailable",
    "Row",
    "Transaction",
    "open_database",
]
