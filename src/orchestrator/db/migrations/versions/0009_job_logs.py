"""Job logs: the lines a running job's worker appends, numbered per job, the last 10,000 kept.

Revision ID: 0009_job_logs
Revises: 0008_queues
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_job_logs"
down_revision = "0008_queues"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The number of the job's last line: an append takes the next numbers by raising it in
    # the same guarded UPDATE that checks the lease, so the job's row orders its appends.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("log_seq", sa.BigInteger, nullable=False, server_default="0"))
    op.create_table(
        "job_logs",
        # A job's lines go with it (deletes, bulk deletes, retention).
        sa.Column(
            "job_id",
            sa.String(36),
            sa.ForeignKey("jobs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("n", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("line", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("revision_counter") as batch:
        batch.add_column(sa.Column("job_logs", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("revision_counter") as batch:
        batch.drop_column("job_logs")
    op.drop_table("job_logs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("log_seq")
