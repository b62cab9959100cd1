"""Team digests: one per team and finished period (week or month), recorded by scoring and
relayed once by notify.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "team_digests",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("team_id", sa.String(128), nullable=False),
        # "2026-W49" (ISO week) or "2026-12" (month): with the team, what makes a digest one.
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("period_kind", sa.String(8), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        # KPIs against the previous period, who crossed a line, plans due (shared.webhooks).
        sa.Column("content", postgresql.JSONB(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        # An admin's subject when sent by hand (POST /v1/teams/{id}/digest/send), else NULL.
        sa.Column("requested_by", sa.Text(), nullable=True),
        # When notify turned it into deliveries (NULL: not yet).
        sa.Column("relayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_team_digests")),
        # Once per team and period, whoever records it first (scan, replica, admin).
        sa.UniqueConstraint("team_id", "period", name=op.f("uq_team_digests_team_id")),
        sa.CheckConstraint(
            "period_kind IN ('week', 'month')", name=op.f("ck_team_digests_period_kind")
        ),
    )
    op.create_index(
        "ix_team_digests_unrelayed",
        "team_digests",
        ["id"],
        postgresql_where=sa.text("relayed_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("team_digests")
