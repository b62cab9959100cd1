"""Appraisal-cycle reminders: meetings not held after finalisation, plan goals due, plans
overdue; recorded once per key by scoring, relayed to channels by notify.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-11
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cycle_reminders",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        # Kind, specialist, quarter, what it is about and the repeat period: recording the
        # same reminder again (another scan, another scoring replica) adds nothing.
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("specialist_id", sa.String(128), nullable=False),
        sa.Column("team_id", sa.String(128), nullable=True),
        sa.Column("quarter", sa.String(7), nullable=False),
        sa.Column("due", sa.Date(), nullable=True),
        sa.Column("subject", postgresql.JSONB(), nullable=False, server_default="{}"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        # When notify turned it into deliveries (NULL: not yet).
        sa.Column("relayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cycle_reminders")),
        sa.UniqueConstraint("key", name=op.f("uq_cycle_reminders_key")),
        sa.CheckConstraint(
            "kind IN ('meeting_not_held', 'goal_due', 'plan_overdue')",
            name=op.f("ck_cycle_reminders_kind"),
        ),
    )
    op.create_index(
        "ix_cycle_reminders_unrelayed",
        "cycle_reminders",
        ["id"],
        postgresql_where=sa.text("relayed_at IS NULL"),
    )
    op.create_index(
        op.f("ix_cycle_reminders_specialist"), "cycle_reminders", ["specialist_id", "id"]
    )


def downgrade() -> None:
    op.drop_table("cycle_reminders")
