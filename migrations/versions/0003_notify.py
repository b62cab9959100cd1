"""Notify: alert state, episodes, transitions, channels, silences, delivery outbox and attempts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = 128


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=nullable
    )


def upgrade() -> None:
    op.create_table(
        "alert_states",
        sa.Column("specialist_id", sa.String(_ID), nullable=False),
        sa.Column("kpi", sa.String(40), nullable=False),
        sa.Column("state", postgresql.JSONB(), nullable=False),
        sa.Column("last_obs", postgresql.JSONB(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("episode", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.String(36), nullable=False),
        sa.Column("team_id", sa.String(_ID), nullable=True),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=True),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("specialist_id", "kpi", name=op.f("pk_alert_states")),
    )
    op.create_index(op.f("ix_alert_states_status"), "alert_states", ["status"])
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.String(36), nullable=False),
        sa.Column("specialist_id", sa.String(_ID), nullable=False),
        sa.Column("kpi", sa.String(40), nullable=False),
        sa.Column("episode", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(_ID), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("window", sa.String(32), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("qualified", sa.Float(), nullable=True),
        sa.Column("grade", sa.String(32), nullable=True),
        sa.Column("samples", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acked_by", sa.String(_ID), nullable=True),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("alert_id", name=op.f("pk_alerts")),
        sa.CheckConstraint("status IN ('firing', 'resolved')", name=op.f("ck_alerts_status")),
    )
    op.create_index(op.f("ix_alerts_status"), "alerts", ["status"])
    op.create_index(op.f("ix_alerts_team_id"), "alerts", ["team_id"])
    op.create_index(op.f("ix_alerts_specialist_id"), "alerts", ["specialist_id", "kpi"])
    op.create_table(
        "alert_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("alert_id", sa.String(36), nullable=False),
        sa.Column("specialist_id", sa.String(_ID), nullable=False),
        sa.Column("kpi", sa.String(40), nullable=False),
        sa.Column("team_id", sa.String(_ID), nullable=True),
        sa.Column("transition", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", postgresql.JSONB(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_events")),
    )
    op.create_index(op.f("ix_alert_events_alert_id"), "alert_events", ["alert_id"])
    op.create_table(
        "channels",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("team_id", sa.String(_ID), nullable=True),
        sa.Column("lang", sa.String(8), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("config", postgresql.JSONB(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channels")),
        sa.CheckConstraint(
            "kind IN ('webhook', 'dingtalk', 'wecom', 'feishu', 'slack', 'email')",
            name=op.f("ck_channels_kind"),
        ),
    )
    op.create_index(op.f("ix_channels_team_id"), "channels", ["team_id"])
    op.create_table(
        "silences",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("specialist_id", sa.String(_ID), nullable=True),
        sa.Column("kpi", sa.String(40), nullable=True),
        sa.Column("team_id", sa.String(_ID), nullable=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("comment", sa.String(500), nullable=True),
        sa.Column("created_by", sa.String(_ID), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_silences")),
        sa.CheckConstraint(
            "specialist_id IS NOT NULL OR kpi IS NOT NULL", name=op.f("ck_silences_target")
        ),
    )
    op.create_index(op.f("ix_silences_until"), "silences", ["until"])
    op.create_table(
        "deliveries",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("delivery_key", sa.String(64), nullable=False),
        sa.Column("channel_id", sa.String(64), nullable=False),
        sa.Column("group_key", sa.String(300), nullable=False),
        sa.Column("team_id", sa.String(_ID), nullable=True),
        sa.Column("alert_ids", postgresql.ARRAY(sa.String(36)), nullable=False),
        sa.Column("items", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _ts("created_at"),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("delivery_key", name=op.f("uq_deliveries_delivery_key")),
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'sent', 'failed')", name=op.f("ck_deliveries_status")
        ),
    )
    op.create_index(
        "ix_deliveries_due",
        "deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status IN ('pending', 'sending')"),
    )
    op.create_index(op.f("ix_deliveries_group_key"), "deliveries", ["group_key", "created_at"])
    op.create_index("ix_deliveries_alert_ids", "deliveries", ["alert_ids"], postgresql_using="gin")
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("worker", sa.String(128), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_delivery_attempts_delivery_id_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
    )
    op.create_index(op.f("ix_delivery_attempts_delivery_id"), "delivery_attempts", ["delivery_id"])


def downgrade() -> None:
    op.drop_table("delivery_attempts")
    op.drop_table("deliveries")
    op.drop_table("silences")
    op.drop_table("channels")
    op.drop_table("alert_events")
    op.drop_table("alerts")
    op.drop_table("alert_states")
