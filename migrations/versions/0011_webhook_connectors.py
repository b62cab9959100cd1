"""Native helpdesk webhooks: specialist aliases (directory); unmapped agents, receipts (ingest).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # One agent (a vendor's agent id, or an e-mail address) is one specialist: the primary
    # key makes (kind, alias) unique, a specialist may have one alias per kind or several.
    op.create_table(
        "specialist_aliases",
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("alias", sa.String(320), nullable=False),
        sa.Column("specialist_id", sa.String(128), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["specialist_id"],
            ["specialists.id"],
            name=op.f("fk_specialist_aliases_specialist_id_specialists"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("kind", "alias", name=op.f("pk_specialist_aliases")),
    )
    op.create_index(
        op.f("ix_specialist_aliases_specialist_id"), "specialist_aliases", ["specialist_id"]
    )
    op.create_table(
        "webhook_unmapped_agents",
        sa.Column("vendor", sa.String(32), nullable=False),
        sa.Column("agent_id", sa.String(320), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("counted_as", sa.String(128), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column(
            "first_seen_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column(
            "last_seen_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("vendor", "agent_id", name=op.f("pk_webhook_unmapped_agents")),
    )

    op.create_table(
        "webhook_receipts",
        sa.Column("vendor", sa.String(32), nullable=False),
        sa.Column("ticket_id", sa.String(128), nullable=False),
        sa.Column("family", sa.String(32), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("vendor", "ticket_id", "family", name=op.f("pk_webhook_receipts")),
    )
    op.create_index(op.f("ix_webhook_receipts_received_at"), "webhook_receipts", ["received_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_receipts_received_at"), table_name="webhook_receipts")
    op.drop_table("webhook_receipts")
    op.drop_table("webhook_unmapped_agents")
    op.drop_index(op.f("ix_specialist_aliases_specialist_id"), table_name="specialist_aliases")
    op.drop_table("specialist_aliases")
