"""Worker indexes: the claim order over pending jobs, and running jobs by lease expiry.

Revision ID: 0003_workers
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_workers"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Partial: a claim scans only pending jobs, in the order it takes them.
    pending = sa.text("status = 'pending'")
    op.create_index(
        "ix_jobs_pending_claim",
        "jobs",
        ["queue", sa.text("priority DESC"), "created_at", "id"],
        postgresql_where=pending,
        sqlite_where=pending,
    )
    # The sweeper looks only at running jobs, oldest expiry first.
    running = sa.text("status = 'running'")
    op.create_index(
        "ix_jobs_running_lease",
        "jobs",
        ["lease_expires_at"],
        postgresql_where=running,
        sqlite_where=running,
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_running_lease", table_name="jobs")
    op.drop_index("ix_jobs_pending_claim", table_name="jobs")
