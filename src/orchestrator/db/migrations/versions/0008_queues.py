"""Queues: settings (paused, max_running), job counts kept by triggers, and the pending-time index.

Revision ID: 0008_queues
Revises: 0007_progress
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_queues"
down_revision = "0007_progress"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)

# The counts follow every write to `jobs`, whatever path makes it (claims, reports, sweeps,
# bulk actions, retention, deletes), because triggers on the table keep them.
#
# SQLite has one writer at a time: its row triggers add to `queue_counts` directly.
#
# On PostgreSQL a direct update would make each (queue, status) row a lock that every
# transition of the queue holds until its commit, taken in whatever order the rows of a
# statement come (a report moving jobs of two queues and a claim of two others could
# deadlock). Statement triggers append their net change to `queue_count_deltas` instead,
# which takes no lock; `queues.counts.fold_counts` folds them into `queue_counts` every
# second, and readers add the two.
#
# A migration that rebuilds `jobs` on SQLite (alembic's batch "recreate", e.g. to change its
# CHECK constraint) drops the table's triggers: it must call `create_sqlite_triggers` again.
SQLITE_TRIGGERS = (
    "CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs BEGIN "
    "INSERT INTO queue_counts (queue, status, n) VALUES (NEW.queue, NEW.status, 1) "
    "ON CONFLICT (queue, status) DO UPDATE SET n = n + 1; END",
    "CREATE TRIGGER jobs_count_update AFTER UPDATE OF status, queue ON jobs "
    "WHEN OLD.status IS NOT NEW.status OR OLD.queue IS NOT NEW.queue BEGIN "
    "UPDATE queue_counts SET n = n - 1 WHERE queue = OLD.queue AND status = OLD.status; "
    "INSERT INTO queue_counts (queue, status, n) VALUES (NEW.queue, NEW.status, 1) "
    "ON CONFLICT (queue, status) DO UPDATE SET n = n + 1; END",
    "CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs BEGIN "
    "UPDATE queue_counts SET n = n - 1 WHERE queue = OLD.queue AND status = OLD.status; END",
)
SQLITE_TRIGGER_NAMES = ("jobs_count_insert", "jobs_count_update", "jobs_count_delete")

# Each statement's net change per (queue, status); heartbeats and other updates that move no
# job between statuses or queues add nothing.
POSTGRES_FUNCTIONS = {
    "insert": "SELECT queue, status, count(*) AS n FROM new_jobs GROUP BY queue, status",
    "delete": "SELECT queue, status, -count(*) AS n FROM old_jobs GROUP BY queue, status",
    "update": (
        "SELECT queue, status, sum(n) AS n FROM (SELECT queue, status, 1 AS n FROM new_jobs "
        "UNION ALL SELECT queue, status, -1 AS n FROM old_jobs) AS moved "
        "GROUP BY queue, status HAVING sum(n) <> 0"
    ),
}
_TRANSITION_TABLES = {
    "insert": "NEW TABLE AS new_jobs",
    "delete": "OLD TABLE AS old_jobs",
    "update": "OLD TABLE AS old_jobs NEW TABLE AS new_jobs",
}


def create_sqlite_triggers() -> None:
    for statement in SQLITE_TRIGGERS:
        op.execute(statement)


def _create_postgres_triggers() -> None:
    for event, query in POSTGRES_FUNCTIONS.items():
        op.execute(
            f"CREATE FUNCTION jobs_count_{event}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN INSERT INTO queue_count_deltas (queue, status, n) {query}; "
            "RETURN NULL; END $$"
        )
        op.execute(
            f"CREATE TRIGGER jobs_count_{event} AFTER {event.upper()} ON jobs "
            f"REFERENCING {_TRANSITION_TABLES[event]} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION jobs_count_{event}()"
        )


def upgrade() -> None:
    op.create_table(
        "queue_settings",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        # NULL: no cap. Claims of a capped queue lock its row, then count its running jobs.
        sa.Column("max_running", sa.Integer, nullable=True),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "queue_counts",
        sa.Column("queue", sa.String(100), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
    )
    # The counts as they are now; the triggers keep them from here on.
    op.execute(
        "INSERT INTO queue_counts (queue, status, n) "
        "SELECT queue, status, count(*) FROM jobs GROUP BY queue, status"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.create_table(
            "queue_count_deltas",
            sa.Column("queue", sa.String(100), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("n", sa.BigInteger, nullable=False),
        )
        _create_postgres_triggers()
    else:
        create_sqlite_triggers()
    # When the longest-waiting job became due, and how many wait for a later time, per queue:
    # the first entry of the queue, and the range after now.
    pending = sa.text("status = 'pending'")
    op.create_index(
        "ix_jobs_pending_run_after",
        "jobs",
        ["queue", "run_after"],
        postgresql_where=pending,
        sqlite_where=pending,
    )
    with op.batch_alter_table("revision_counter") as batch:
        batch.add_column(sa.Column("queues", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("revision_counter") as batch:
        batch.drop_column("queues")
    op.drop_index("ix_jobs_pending_run_after", table_name="jobs")
    if op.get_bind().dialect.name == "postgresql":
        for event in POSTGRES_FUNCTIONS:
            op.execute(f"DROP TRIGGER jobs_count_{event} ON jobs")
            op.execute(f"DROP FUNCTION jobs_count_{event}()")
        op.drop_table("queue_count_deltas")
    else:
        for name in SQLITE_TRIGGER_NAMES:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table("queue_counts")
    op.drop_table("queue_settings")
