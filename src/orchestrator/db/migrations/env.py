"""Alembic environment: async engines for both backends, one migrator at a time."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK = 7_418_233


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _migrate(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    async with engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            # Several server processes may start at once; they take turns.
            await connection.execute(text(f"SELECT pg_advisory_lock({_MIGRATION_LOCK})"))
            await connection.commit()
        try:
            await connection.run_sync(_run)
            await connection.commit()
        finally:
            if postgres:
                await connection.execute(text(f"SELECT pg_advisory_unlock({_MIGRATION_LOCK})"))
                await connection.commit()
    await engine.dispose()


asyncio.run(_migrate(context.config.attributes["url"]))
