"""Login failures per account, shared by every process (see `orchestrator.auth.throttle`).

Revision ID: 0010_login_failures
Revises: 0009_job_logs
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_login_failures"
down_revision = "0009_job_logs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Times are seconds since the epoch: the delay is arithmetic on them in every process.
    op.create_table(
        "login_failures",
        # `username_key` of the name tried, whether or not such an account exists
        sa.Column("account", sa.Text, primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_failed_at", sa.Double, nullable=False),
        sa.Column("blocked_until", sa.Double, nullable=False),
    )
    op.create_index("login_failures_last_failed_at", "login_failures", ["last_failed_at"])


def downgrade() -> None:
    op.drop_index("login_failures_last_failed_at", table_name="login_failures")
    op.drop_table("login_failures")
