"""Leases: the account holding each lease, and a claim index in the order claims take jobs.

Revision ID: 0006_leases
Revises: 0005_jobs_over_time
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_leases"
down_revision = "0005_jobs_over_time"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The id of the account that made the claim: only it (or an admin) may use the lease.
    op.add_column("jobs", sa.Column("lease_owner", sa.String(36), nullable=True))
    # A claim takes the highest priority first, then the job due first. Within a priority the
    # due jobs are a prefix of the index, so a claim reads only the rows it takes, however many
    # jobs wait for a later time (a retry's backoff, a scheduled job).
    pending = sa.text("status = 'pending'")
    op.drop_index("ix_jobs_pending_claim", table_name="jobs")
    op.create_index(
        "ix_jobs_pending_due",
        "jobs",
        ["queue", sa.text("priority DESC"), "run_after", "id"],
        postgresql_where=pending,
        sqlite_where=pending,
    )


def downgrade() -> None:
    pending = sa.text("status = 'pending'")
    op.drop_index("ix_jobs_pending_due", table_name="jobs")
    op.create_index(
        "ix_jobs_pending_claim",
        "jobs",
        ["queue", sa.text("priority DESC"), "created_at", "id"],
        postgresql_where=pending,
        sqlite_where=pending,
    )
    op.drop_column("jobs", "lease_owner")
