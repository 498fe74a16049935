"""Job dependencies: the status `waiting`, each job's parents, and who depends on whom.

Revision ID: 0011_dependencies
Revises: 0010_login_failures
Create Date: 2026-12-01
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0011_dependencies"
down_revision = "0010_login_failures"
branch_labels = None
depends_on = None

STATUSES = "('waiting', 'pending', 'running', 'succeeded', 'failed', 'cancelled')"
OLD_STATUSES = "('pending', 'running', 'succeeded', 'failed', 'cancelled')"
# A waiting job holds its unique key as a pending or running one does.
UNFINISHED = sa.text("unique_key IS NOT NULL AND status IN ('waiting', 'pending', 'running')")
OLD_UNFINISHED = sa.text("unique_key IS NOT NULL AND status IN ('pending', 'running')")


def _queues_migration() -> object:
    # The module's name starts with a digit: imported by name, for its trigger statements.
    return importlib.import_module("orchestrator.db.migrations.versions.0008_queues")


def _status_check(statuses: str, *, drop_columns: tuple[str, ...] = ()) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    # SQLite changes a CHECK constraint only by rebuilding the table; PostgreSQL alters it
    # in place (a rebuild would drop the table's count triggers there too).
    with op.batch_alter_table("jobs", recreate="always" if sqlite else "auto") as batch:
        for column in drop_columns:
            batch.drop_column(column)
        batch.drop_constraint("ck_jobs_status", type_="check")
        batch.create_check_constraint("ck_jobs_status", f"status IN {statuses}")
    if sqlite:
        # Rebuilding the table dropped its triggers (see migration 0008).
        _queues_migration().create_sqlite_triggers()  # type: ignore[attr-defined]


def _unique_index(where: sa.TextClause) -> None:
    op.drop_index("ux_jobs_unique_key", table_name="jobs")
    op.create_index(
        "ux_jobs_unique_key",
        "jobs",
        ["queue", "unique_key"],
        unique=True,
        postgresql_where=where,
        sqlite_where=where,
    )


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        # The parents' ids as canonical JSON (NULL: none), as the job's body lists them.
        batch.add_column(sa.Column("depends_on", sa.Text, nullable=True))
        # Set when a job is first named as a parent: a transition of a job without
        # dependents looks for no children (the hot path of completes stays one statement).
        batch.add_column(
            sa.Column("has_dependents", sa.Boolean, nullable=False, server_default=sa.false())
        )
    _status_check(STATUSES)
    _unique_index(UNFINISHED)
    # Child → parent, and the reverse index: a parent's transition finds its children by it.
    # A parent may be deleted (its id stays listed); deleting a child drops its edges.
    op.create_table(
        "job_dependencies",
        sa.Column(
            "child",
            sa.String(36),
            sa.ForeignKey("jobs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("parent", sa.String(36), primary_key=True),
    )
    op.create_index("ix_job_dependencies_parent", "job_dependencies", ["parent", "child"])


def downgrade() -> None:
    op.drop_index("ix_job_dependencies_parent", table_name="job_dependencies")
    op.drop_table("job_dependencies")
    op.execute("UPDATE jobs SET status = 'cancelled' WHERE status = 'waiting'")
    _unique_index(OLD_UNFINISHED)
    _status_check(OLD_STATUSES, drop_columns=("has_dependents", "depends_on"))
