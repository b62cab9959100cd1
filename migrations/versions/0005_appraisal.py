"""Quarterly appraisal: finalised snapshots, finalisations, feedback meetings, improvement plans.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "appraisal_snapshots",
        sa.Column("quarter", sa.String(7), nullable=False),
        sa.Column("specialist_id", sa.String(128), nullable=False),
        sa.Column("team_id", sa.String(128), nullable=True),
        sa.Column("snapshot", postgresql.JSONB(), nullable=False),
        sa.Column("finalized_by", sa.String(128), nullable=False),
        _ts("finalized_at"),
        sa.PrimaryKeyConstraint("quarter", "specialist_id", name=op.f("pk_appraisal_snapshots")),
    )
    op.create_index(
        "ix_appraisal_snapshots_quarter_team", "appraisal_snapshots", ["quarter", "team_id"]
    )
    op.create_table(
        "appraisal_finalizations",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("quarter", sa.String(7), nullable=False),
        sa.Column("team_id", sa.String(128), nullable=True),
        sa.Column("finalized_by", sa.String(128), nullable=False),
        _ts("finalized_at"),
        sa.Column("frozen", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appraisal_finalizations")),
    )
    op.create_index(
        op.f("ix_appraisal_finalizations_quarter"), "appraisal_finalizations", ["quarter"]
    )
    op.create_table(
        "feedback_meetings",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("specialist_id", sa.String(128), nullable=False),
        sa.Column("quarter", sa.String(7), nullable=True),
        sa.Column("met_on", sa.Date(), nullable=False),
        sa.Column("participants", postgresql.JSONB(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_meetings")),
    )
    op.create_index(
        "ix_feedback_meetings_specialist", "feedback_meetings", ["specialist_id", "met_on"]
    )
    op.create_table(
        "improvement_plans",
        sa.Column("specialist_id", sa.String(128), nullable=False),
        sa.Column("quarter", sa.String(7), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("goals", postgresql.JSONB(), nullable=False),
        sa.Column("notes", sa.Text(), server_default="", nullable=False),
        sa.Column("origin", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        _ts("created_at"),
        sa.Column("updated_by", sa.String(128), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("specialist_id", "quarter", name=op.f("pk_improvement_plans")),
        sa.CheckConstraint(
            "status IN ('draft', 'open', 'on_track', 'achieved', 'missed')",
            name=op.f("ck_improvement_plans_status"),
        ),
    )
    op.create_index("ix_improvement_plans_quarter", "improvement_plans", ["quarter"])


def downgrade() -> None:
    op.drop_table("improvement_plans")
    op.drop_table("feedback_meetings")
    op.drop_table("appraisal_finalizations")
    op.drop_table("appraisal_snapshots")
