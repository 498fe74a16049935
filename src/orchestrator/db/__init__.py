"""Persistence: the database port, its SQLite and PostgreSQL backends, and migrations."""

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
