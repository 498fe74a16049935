"""Jobs over time: unique keys, retention of finished jobs, and cron schedules.

Revision ID: 0005_jobs_over_time
Revises: 0004_credentials
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_jobs_over_time"
down_revision = "0004_credentials"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
UNFINISHED = sa.text("unique_key IS NOT NULL AND status IN ('pending', 'running')")
FINISHED = sa.text("status IN ('succeeded', 'failed', 'cancelled')")
ENABLED = sa.text("enabled")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("unique_key", sa.String(200), nullable=True))
    # The rule itself: one unfinished job per (queue, unique_key). Partial, so a finished job
    # frees its key, and two processes racing to create it cannot both commit.
    op.create_index(
        "ux_jobs_unique_key",
        "jobs",
        ["queue", "unique_key"],
        unique=True,
        postgresql_where=UNFINISHED,
        sqlite_where=UNFINISHED,
    )
    # Retention deletes finished jobs oldest first, in small batches.
    op.create_index(
        "ix_jobs_finished",
        "jobs",
        ["finished_at"],
        postgresql_where=FINISHED,
        sqlite_where=FINISHED,
    )

    op.create_table(
        "schedules",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("cron", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        # the job each fire creates (title, description, queue, payload, priority,
        # max_attempts), canonical JSON
        sa.Column("job", sa.Text, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        # the next fire time; NULL while disabled. A fire advances it from the value it
        # saw, in one guarded UPDATE, so each fire time is taken by one process only.
        sa.Column("next_run_at", TS, nullable=True),
        sa.Column("last_fired_at", TS, nullable=True),
        sa.Column("last_job_id", sa.String(36), nullable=True),
        sa.Column("created_by", sa.String(150), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_schedules_created", "schedules", ["created_at", "id"])
    op.create_index(
        "ix_schedules_due",
        "schedules",
        ["next_run_at"],
        postgresql_where=ENABLED,
        sqlite_where=ENABLED,
    )

    with op.batch_alter_table("revision_counter") as batch:
        batch.add_column(sa.Column("schedules", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("revision_counter") as batch:
        batch.drop_column("schedules")
    op.drop_table("schedules")
    op.drop_index("ix_jobs_finished", table_name="jobs")
    op.drop_index("ux_jobs_unique_key", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("unique_key")
