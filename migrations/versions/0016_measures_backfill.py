"""Backfill progress of the SPEC §3a measures: one row per backfill, its cursor and when done.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scoring_backfills",
        sa.Column("name", sa.String(64), nullable=False),
        # Tickets up to this id (key order) are done; scoring replicas take turns on the row.
        sa.Column("after_id", sa.String(128), nullable=False, server_default=""),
        sa.Column("tickets", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("changed", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_scoring_backfills")),
    )


def downgrade() -> None:
    op.drop_table("scoring_backfills")
