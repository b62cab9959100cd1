"""Delivery resend: who resent a failed delivery and where its fresh retry budget starts.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The retry budget (KPI_NOTIFY_RETRY_FOR) runs from resent_at when set, else created_at;
    # backoff and the optional attempt cap count only the attempts after the resend.
    op.add_column("deliveries", sa.Column("resent_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("deliveries", sa.Column("resent_by", sa.String(128), nullable=True))
    op.add_column(
        "deliveries", sa.Column("resends", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column(
        "deliveries",
        sa.Column("attempts_before_resend", sa.Integer(), nullable=False, server_default="0"),
    )
    # Failed deliveries are few and listed newest first (GET /v1/deliveries?status=failed).
    op.create_index(
        "ix_deliveries_failed",
        "deliveries",
        ["id"],
        postgresql_where=sa.text("status = 'failed'"),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_failed", table_name="deliveries")
    op.drop_column("deliveries", "attempts_before_resend")
    op.drop_column("deliveries", "resends")
    op.drop_column("deliveries", "resent_by")
    op.drop_column("deliveries", "resent_at")
