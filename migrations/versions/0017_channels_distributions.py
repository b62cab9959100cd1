"""Per-channel breakdown (kpi_channel_daily) and time distributions (kpi_time_buckets).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The metrics broken down by channel when this migration was written (kpi/breakdown.py):
# a migration keeps its own copy, so later releases cannot change what it did.
_BROKEN_DOWN = (
    "customer_satisfaction",
    "resolution_rate",
    "avg_response_time_hours",
    "followup_rate",
    "resolution_time_hours",
    "first_response_sla_rate",
    "reopen_rate",
)


def upgrade() -> None:
    op.create_table(
        "kpi_channel_daily",
        sa.Column("specialist_id", sa.String(128), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("metric", sa.String(40), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("num", sa.Float(), nullable=False),
        sa.Column("den", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "specialist_id", "day", "metric", "channel", name=op.f("pk_kpi_channel_daily")
        ),
    )
    op.create_table(
        "kpi_time_buckets",
        sa.Column("specialist_id", sa.String(128), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("metric", sa.String(40), nullable=False),
        sa.Column("bucket", sa.SmallInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "specialist_id", "day", "metric", "bucket", name=op.f("pk_kpi_time_buckets")
        ),
    )
    # Everything counted so far is of channel unknown (no ticket state stored a channel):
    # the breakdown starts equal to kpi_daily, and each stored (v2) ticket moves its share
    # out of "unknown" when an event makes it learn a channel. The distributions start
    # empty; `kpi rescore` fills them from the stored tickets (docs/upgrading.md).
    op.execute(
        sa.text(
            """
            INSERT INTO kpi_channel_daily (specialist_id, day, metric, channel, num, den)
            SELECT specialist_id, day, metric, 'unknown', num, den FROM kpi_daily
            WHERE metric = ANY(:metrics) AND (den <> 0 OR num <> 0)
            """
        ).bindparams(sa.bindparam("metrics", list(_BROKEN_DOWN), type_=sa.ARRAY(sa.String())))
    )


def downgrade() -> None:
    op.drop_table("kpi_time_buckets")
    op.drop_table("kpi_channel_daily")
