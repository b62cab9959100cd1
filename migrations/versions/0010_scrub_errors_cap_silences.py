"""Stored delivery errors keep only their fixed reason; silences end within 31 days.

Until this release a failed send stored up to 200 bytes of the target's answer (and an
SMTP server's reply, or an exception's text) in `deliveries.last_error` and
`delivery_attempts.error`, which supervisors read. Every such text had the shape
"<reason>: <detail>"; the detail is dropped ("HTTP 500: b'...'" becomes "HTTP 500").

Silences had no longest duration; KPI_NOTIFY_SILENCE_MAX_HOURS (default 744 h, 31 days)
now caps new ones, and the ones already set end at most 31 days after they were created.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-14
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE deliveries SET last_error = split_part(last_error, ':', 1) "
        "WHERE last_error LIKE '%:%'"
    )
    op.execute(
        "UPDATE delivery_attempts SET error = split_part(error, ':', 1) WHERE error LIKE '%:%'"
    )
    op.execute(
        "UPDATE silences SET until = created_at + interval '31 days' "
        "WHERE until > created_at + interval '31 days'"
    )


def downgrade() -> None:
    # The dropped texts are gone for good, and a shortened silence was meant to be short.
    pass
