"""Credentials: sessions with their refresh tokens, and API keys.

Revision ID: 0004_credentials
Revises: 0003_workers
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_credentials"
down_revision = "0003_workers"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # A session is one login (or one browser sign-in): its refresh tokens form one family,
    # and its id is the `sid` claim of every access token issued for it.
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_used_at", TS, nullable=False),
        # the absolute end (ORCH_SESSION_MAX_DAYS after sign-in), whatever happens
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("user_agent", sa.String(200), nullable=True),
        sa.Column("client_address", sa.String(64), nullable=True),
        sa.CheckConstraint("kind IN ('token', 'browser')", name="ck_sessions_kind"),
    )
    op.create_index("ix_sessions_user", "sessions", ["user_id", "created_at"])
    op.create_index("ix_sessions_revoked_at", "sessions", ["revoked_at"])

    # Only hashes: a stolen database holds nothing a client could present.
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column(
            "session_id",
            sa.String(36),
            sa.ForeignKey("sessions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", TS, nullable=False),
        # idle expiry: ORCH_REFRESH_IDLE_DAYS after this token was issued
        sa.Column("expires_at", TS, nullable=False),
        # set once, when the token is exchanged for its successor
        sa.Column("used_at", TS, nullable=True),
        # the access token issued beside this refresh token, so that a replay within the
        # grace window can answer with the very same pair (no secret is stored for it);
        # NULL for browser sessions, whose cookie is the only credential
        sa.Column("access_jti", sa.String(32), nullable=True),
        sa.Column("access_iat_us", sa.BigInteger, nullable=True),
        sa.Column("access_exp", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_refresh_tokens_session", "refresh_tokens", ["session_id"])
    op.create_index("ix_refresh_tokens_expires_at", "refresh_tokens", ["expires_at"])

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("read_only", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("last_used_at", TS, nullable=True),
    )
    op.create_index("ix_api_keys_user", "api_keys", ["user_id", "created_at"])

    # Revocations travel in the change log like any other write, so every process hears of
    # them through the feed (NOTIFY, then the poll) without a database read per request.
    with op.batch_alter_table("revision_counter") as batch:
        batch.add_column(sa.Column("sessions", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("api_keys", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("revision_counter") as batch:
        batch.drop_column("api_keys")
        batch.drop_column("sessions")
    op.drop_table("api_keys")
    op.drop_table("refresh_tokens")
    op.drop_table("sessions")
