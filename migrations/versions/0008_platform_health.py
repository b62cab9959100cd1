"""Platform health: incidents for admins (log resets, stalls, poison records), log identity
of stored offsets.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The identity of the record just below next_offset: on assignment the consumer reads
    # that record again and compares, so a log that was replaced (memory broker restarted,
    # topic re-created, cluster rebuilt) is noticed even when it is already longer.
    op.add_column("consumer_offsets", sa.Column("fingerprint", sa.String(64), nullable=True))
    op.create_table(
        "platform_incidents",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("service", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("detail", postgresql.JSONB(), nullable=False, server_default="{}"),
        sa.Column("occurrences", sa.Integer(), nullable=False, server_default="1"),
        sa.Column(
            "opened_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(128), nullable=True),
        # The last status notify turned into deliveries (NULL: none yet).
        sa.Column("notified", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_incidents")),
        sa.CheckConstraint(
            "status IN ('open', 'resolved')", name=op.f("ck_platform_incidents_status")
        ),
    )
    # One open incident per key: a recurrence while open updates it instead of adding rows.
    op.create_index(
        "uq_platform_incidents_open_key",
        "platform_incidents",
        ["key"],
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
    )
    op.create_index(
        "ix_platform_incidents_unnotified",
        "platform_incidents",
        ["id"],
        postgresql_where=sa.text("notified IS DISTINCT FROM status"),
    )
    op.create_index(op.f("ix_platform_incidents_opened_at"), "platform_incidents", ["opened_at"])


def downgrade() -> None:
    op.drop_table("platform_incidents")
    op.drop_column("consumer_offsets", "fingerprint")
