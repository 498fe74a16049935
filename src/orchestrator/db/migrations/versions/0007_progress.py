"""Progress: how far a running job is, what it is doing, and when the feed last heard of it.

Revision ID: 0007_progress
Revises: 0006_leases
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_progress"
down_revision = "0006_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("progress", sa.Float, nullable=True))
        batch.add_column(sa.Column("progress_message", sa.Text, nullable=True))
        # When progress last reached the change feed (at most once a second per job), and
        # whether the row holds progress the feed has not carried yet.
        batch.add_column(sa.Column("progress_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("progress_pending", sa.Boolean, nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("progress_pending")
        batch.drop_column("progress_at")
        batch.drop_column("progress_message")
        batch.drop_column("progress")
