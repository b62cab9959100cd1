"""Scoring write path: free space for HOT updates, ticket/session state stored as json text.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Rows the scoring engine updates in place keep room on their page, so the new version
# stays there (a HOT update: no index entry, less WAL). Only new pages get the free space;
# processed_events is insert-only and keeps the default. kpi_facts rows are mostly written
# once, so they reserve little.
FILLFACTOR = {
    "kpi_daily": 80,
    "kpi_facts": 90,
    "ticket_states": 80,
    "training_sessions": 80,
    "score_outbox": 70,
    "consumer_offsets": 50,
}
# The engine reads and writes the whole document as text and never queries inside it:
# json keeps orjson's text as is (~15 % smaller than jsonb here, and no binary conversion
# on every write and read).
STATE_TABLES = ("ticket_states", "training_sessions")


def upgrade() -> None:
    for table, fillfactor in FILLFACTOR.items():
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {fillfactor})")
    for table in STATE_TABLES:
        op.alter_column(
            table,
            "state",
            type_=postgresql.JSON(),
            existing_type=postgresql.JSONB(),
            existing_nullable=False,
            postgresql_using="state::json",
        )


def downgrade() -> None:
    for table in STATE_TABLES:
        op.alter_column(
            table,
            "state",
            type_=postgresql.JSONB(),
            existing_type=postgresql.JSON(),
            existing_nullable=False,
            postgresql_using="state::jsonb",
        )
    for table in FILLFACTOR:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
