"""Appraisal cycle: meeting states, the specialist's acknowledgement and comment, incentive
decisions (with their history), progress notes on improvement plans. (The specialist token
role is admitted by 0012.)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    if nullable:
        return sa.Column(name, sa.DateTime(timezone=True), nullable=True)
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def _snapshot_fk(table: str) -> sa.ForeignKeyConstraint:
    # Acknowledgements, comments and decisions are about a finalised appraisal: its snapshot.
    return sa.ForeignKeyConstraint(
        ["quarter", "specialist_id"],
        ["appraisal_snapshots.quarter", "appraisal_snapshots.specialist_id"],
        name=op.f(f"fk_{table}_snapshot"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    # Meetings recorded before this revision were held on the date they carry.
    op.add_column(
        "feedback_meetings",
        sa.Column("status", sa.String(16), server_default="held", nullable=False),
    )
    op.add_column("feedback_meetings", _ts("scheduled_for", nullable=True))
    op.add_column("feedback_meetings", sa.Column("held_on", sa.Date(), nullable=True))
    op.add_column(
        "feedback_meetings",
        sa.Column(
            "agreed_actions",
            postgresql.JSONB(),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("feedback_meetings", sa.Column("updated_by", sa.String(128), nullable=True))
    op.add_column("feedback_meetings", _ts("updated_at", nullable=True))
    op.add_column("feedback_meetings", _ts("acknowledged_at", nullable=True))
    op.execute("UPDATE feedback_meetings SET held_on = met_on WHERE status = 'held'")
    op.create_check_constraint(
        op.f("ck_feedback_meetings_status"),
        "feedback_meetings",
        "status IN ('scheduled', 'held', 'cancelled')",
    )
    op.create_check_constraint(
        op.f("ck_feedback_meetings_held_on"),
        "feedback_meetings",
        "(status = 'held') = (held_on IS NOT NULL)",
    )
    op.create_index(
        "ix_feedback_meetings_quarter", "feedback_meetings", ["quarter", "specialist_id"]
    )

    op.create_table(
        "appraisal_responses",
        sa.Column("quarter", sa.String(7), nullable=False),
        sa.Column("specialist_id", sa.String(128), nullable=False),
        _ts("acknowledged_at", nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        _ts("commented_at", nullable=True),
        _ts("comment_updated_at", nullable=True),
        sa.PrimaryKeyConstraint("quarter", "specialist_id", name=op.f("pk_appraisal_responses")),
        _snapshot_fk("appraisal_responses"),
    )

    op.create_table(
        "appraisal_decisions",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("quarter", sa.String(7), nullable=False),
        sa.Column("specialist_id", sa.String(128), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("amount", sa.Float(), nullable=True),
        sa.Column("level", sa.String(200), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(128), nullable=False),
        _ts("decided_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appraisal_decisions")),
        _snapshot_fk("appraisal_decisions"),
    )
    op.create_index(
        "ix_appraisal_decisions_quarter_specialist",
        "appraisal_decisions",
        ["quarter", "specialist_id", "id"],
    )

    op.create_table(
        "plan_progress_notes",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("specialist_id", sa.String(128), nullable=False),
        sa.Column("quarter", sa.String(7), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("author_role", sa.String(20), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_progress_notes")),
        sa.ForeignKeyConstraint(
            ["specialist_id", "quarter"],
            ["improvement_plans.specialist_id", "improvement_plans.quarter"],
            name=op.f("fk_plan_progress_notes_plan"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_plan_progress_notes_plan", "plan_progress_notes", ["specialist_id", "quarter", "id"]
    )


def downgrade() -> None:
    op.drop_table("plan_progress_notes")
    op.drop_table("appraisal_decisions")
    op.drop_table("appraisal_responses")
    op.drop_index("ix_feedback_meetings_quarter", table_name="feedback_meetings")
    op.drop_constraint(op.f("ck_feedback_meetings_held_on"), "feedback_meetings", type_="check")
    op.drop_constraint(op.f("ck_feedback_meetings_status"), "feedback_meetings", type_="check")
    for column in (
        "acknowledged_at",
        "updated_at",
        "updated_by",
        "agreed_actions",
        "held_on",
        "scheduled_for",
        "status",
    ):
        op.drop_column("feedback_meetings", column)
