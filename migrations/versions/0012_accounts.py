"""Accounts of people: users, dashboard sessions, failed sign-ins; token expiry.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOW = sa.func.now()


def _moment(name: str, *, nullable: bool = False, now: bool = True) -> sa.Column[object]:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=_NOW if now else None, nullable=nullable
    )


def upgrade() -> None:
    op.add_column("api_tokens", sa.Column("expires_at", sa.DateTime(timezone=True)))
    # Tokens of the specialist role (bound to a specialist id) are stored like the others.
    op.execute("ALTER TABLE api_tokens DROP CONSTRAINT IF EXISTS ck_api_tokens_role")
    op.create_check_constraint(
        op.f("ck_api_tokens_role"),
        "api_tokens",
        "role IN ('admin', 'supervisor', 'specialist', 'service')",
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("username_key", sa.Text(), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column(
            "team_ids",
            postgresql.ARRAY(sa.String(128)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("specialist_id", sa.String(128), nullable=True),
        sa.Column("password_hash", sa.String(512), nullable=False),
        _moment("created_at"),
        _moment("updated_at"),
        _moment("last_login_at", nullable=True, now=False),
        _moment("disabled_at", nullable=True, now=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username_key", name=op.f("uq_users_username_key")),
        sa.CheckConstraint(
            "role IN ('admin', 'supervisor', 'specialist')", name=op.f("ck_users_role")
        ),
        sa.CheckConstraint(
            "(role = 'specialist') = (specialist_id IS NOT NULL)",
            name=op.f("ck_users_specialist_id"),
        ),
    )
    op.create_table(
        "user_sessions",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        _moment("created_at"),
        _moment("last_seen_at"),
        _moment("expires_at", now=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_user_sessions")),
    )
    op.create_index(op.f("ix_user_sessions_user_id"), "user_sessions", ["user_id"])
    op.create_index(op.f("ix_user_sessions_expires_at"), "user_sessions", ["expires_at"])
    op.create_table(
        "login_failures",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        _moment("failed_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
    )
    op.create_index("ix_login_failures_key_failed_at", "login_failures", ["key", "failed_at"])
    op.create_index(op.f("ix_login_failures_failed_at"), "login_failures", ["failed_at"])


def downgrade() -> None:
    op.drop_table("login_failures")
    op.drop_table("user_sessions")
    op.drop_table("users")
    op.execute("DELETE FROM api_tokens WHERE role = 'specialist'")
    op.drop_constraint(op.f("ck_api_tokens_role"), "api_tokens", type_="check")
    op.create_check_constraint(
        op.f("ck_api_tokens_role"), "api_tokens", "role IN ('admin', 'supervisor', 'service')"
    )
    op.drop_column("api_tokens", "expires_at")
