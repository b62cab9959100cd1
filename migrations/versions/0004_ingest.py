"""Ingest: durable intake counters by topic, outcome and reason.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ingest_stats",
        sa.Column("topic", sa.String(300), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("topic", "outcome", "code", name=op.f("pk_ingest_stats")),
        sa.CheckConstraint(
            "outcome IN ('published', 'deadlettered')", name=op.f("ck_ingest_stats_outcome")
        ),
    )


def downgrade() -> None:
    op.drop_table("ingest_stats")
