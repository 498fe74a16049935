"""Alembic, driven from code: `upgrade(url)` brings a database to the newest schema."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from orchestrator.db.database import prepare_sqlite_file, sqlite_path

MIGRATIONS = Path(__file__).with_name("migrations")


def sqlalchemy_url(url: str) -> str:
    """The async SQLAlchemy URL for one of our database URLs."""
    scheme, rest = url.split("://", 1)
    if scheme.startswith("sqlite"):
        return f"sqlite+aiosqlite://{rest}"
    if scheme.startswith("postgres"):
        return f"postgresql+asyncpg://{rest}"
    raise ValueError(f"unsupported database URL scheme {scheme!r}")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = sqlalchemy_url(url)
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply every pending migration. Must not run inside an event loop."""
    if url.startswith("sqlite"):
        prepare_sqlite_file(sqlite_path(url))
    command.upgrade(alembic_config(url), revision)


def current(url: str) -> None:
    command.current(alembic_config(url), verbose=False)
