"""Scoring engine: event dedup, stored offsets, ticket/session state, daily aggregates, outbox.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=nullable
    )


def upgrade() -> None:
    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("payload_hash", sa.CHAR(64), nullable=False),
        _ts("first_seen_at"),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_processed_events")),
    )
    op.create_table(
        "event_conflicts",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("payload_hash", sa.CHAR(64), nullable=False),
        _ts("seen_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_conflicts")),
    )
    op.create_index(op.f("ix_event_conflicts_event_id"), "event_conflicts", ["event_id"])
    op.create_table(
        "consumer_offsets",
        sa.Column("group_id", sa.String(128), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("group_id", "topic", "partition", name=op.f("pk_consumer_offsets")),
    )
    op.create_table(
        "ticket_states",
        sa.Column("ticket_id", sa.String(128), nullable=False),
        sa.Column("state", postgresql.JSONB(), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("ticket_id", name=op.f("pk_ticket_states")),
    )
    op.create_table(
        "training_sessions",
        sa.Column("session_id", sa.String(128), nullable=False),
        sa.Column("state", postgresql.JSONB(), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_training_sessions")),
    )
    op.create_table(
        "kpi_daily",
        sa.Column("specialist_id", sa.String(128), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("metric", sa.String(40), nullable=False),
        sa.Column("num", sa.Float(), nullable=False),
        sa.Column("den", sa.BigInteger(), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("specialist_id", "day", "metric", name=op.f("pk_kpi_daily")),
    )
    op.create_index(op.f("ix_kpi_daily_day"), "kpi_daily", ["day"])
    op.create_table(
        "kpi_facts",
        sa.Column("specialist_id", sa.String(128), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("metric", sa.String(40), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("num", sa.Float(), nullable=False),
        sa.Column("den", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "specialist_id", "metric", "day", "source", name=op.f("pk_kpi_facts")
        ),
    )
    op.create_table(
        "data_quality_issues",
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("issue", sa.String(64), nullable=False),
        _ts("detected_at"),
        sa.PrimaryKeyConstraint("source", "issue", name=op.f("pk_data_quality_issues")),
    )
    # Every enqueue draws a new version, so the relay deletes only rows it actually published.
    op.execute(sa.schema.CreateSequence(sa.Sequence("score_outbox_version_seq")))
    op.create_table(
        "score_outbox",
        sa.Column("specialist_id", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        _ts("enqueued_at"),
        sa.Column(
            "version",
            sa.BigInteger(),
            server_default=sa.text("nextval('score_outbox_version_seq')"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("specialist_id", name=op.f("pk_score_outbox")),
    )
    op.create_index(op.f("ix_score_outbox_enqueued_at"), "score_outbox", ["enqueued_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_score_outbox_enqueued_at"), table_name="score_outbox")
    op.drop_table("score_outbox")
    op.execute(sa.schema.DropSequence(sa.Sequence("score_outbox_version_seq")))
    op.drop_table("data_quality_issues")
    op.drop_table("kpi_facts")
    op.drop_index(op.f("ix_kpi_daily_day"), table_name="kpi_daily")
    op.drop_table("kpi_daily")
    op.drop_table("training_sessions")
    op.drop_table("ticket_states")
    op.drop_table("consumer_offsets")
    op.drop_index(op.f("ix_event_conflicts_event_id"), table_name="event_conflicts")
    op.drop_table("event_conflicts")
    op.drop_table("processed_events")
