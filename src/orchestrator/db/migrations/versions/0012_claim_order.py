"""The claim index in the claim's order again on SQLite (highest priority first).

Migration 0007 rebuilt the jobs table on SQLite (`batch_alter_table`), which recreates its
indexes from what SQLite reports of them, and that leaves out a column's DESC:
`ix_jobs_pending_due` became (queue, priority, run_after, id), which cannot give the claim's
order (priority DESC, run_after, id). Each claim then read and sorted every due pending job of
its queue, about 0.75 ms per claim with 2,000 jobs waiting, and growing with the backlog.
PostgreSQL kept the index as it was made; only SQLite's is made again.

Migration 0011 (dependencies) rebuilds the table on SQLite again, so this one follows it. Any
later rebuild of the jobs table on SQLite loses the DESC the same way, and must make the
index again as here (tests/workers/test_claim_plan.py fails if not).

Revision ID: 0012_claim_order
Revises: 0011_dependencies
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0012_claim_order"
down_revision = "0011_dependencies"
branch_labels = None
depends_on = None

CLAIM_INDEX = (
    "CREATE INDEX ix_jobs_pending_due ON jobs (queue, priority DESC, run_after, id) "
    "WHERE status = 'pending'"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP INDEX IF EXISTS ix_jobs_pending_due")
        op.execute(CLAIM_INDEX)


def downgrade() -> None:
    pass  # the index in the claim's order is right for every earlier revision too
