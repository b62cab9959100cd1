"""Dedup retention: a BRIN index on processed_events.first_seen_at for the purge.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows arrive in first_seen_at order, so a BRIN index finds the old ones for a few
    # pages of index and costs the hot insert path next to nothing (a B-tree would add an
    # index insertion to every claimed event).
    op.execute(
        "CREATE INDEX ix_processed_events_first_seen_at ON processed_events "
        "USING brin (first_seen_at)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_processed_events_first_seen_at")
