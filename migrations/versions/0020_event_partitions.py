"""Partitioned dedup: processed_events in generations of claim time, dropped whole by retention.

Revision ID: 0020
Revises: 0015
Create Date: 2026-12-08
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Must match services/scoring/engine/partitions.py (a migration never imports the service).
GENERATIONS = 2


def _partition(number: int) -> None:
    op.execute(
        f"CREATE TABLE processed_events_g{number:06d} PARTITION OF processed_events "
        f"FOR VALUES FROM ({number}) TO ({number + 1})"
    )


def upgrade() -> None:
    conn = op.get_bind()
    retention = int(os.environ.get("KPI_DEDUP_RETENTION_DAYS", "90") or 90)
    width_days = max(1, math.ceil(retention / GENERATIONS)) if retention > 0 else None
    # Claims wait (a batch transaction at most) instead of failing: the copy runs under this
    # lock and the new table takes the old one's name in the same transaction.
    op.execute("LOCK TABLE processed_events IN ACCESS EXCLUSIVE MODE")
    op.execute("ALTER TABLE processed_events RENAME TO processed_events_old")
    op.execute(
        "ALTER TABLE processed_events_old RENAME CONSTRAINT pk_processed_events "
        "TO pk_processed_events_old"
    )
    op.execute("DROP INDEX ix_processed_events_first_seen_at")
    # The open generation (closed_at IS NULL) is the partition every claim writes to; it
    # changes only under the exclusive claim lock (docs/engine.md, "Dedup partitions").
    op.execute(
        """
        CREATE TABLE dedup_generations (
            number integer NOT NULL,
            opened_at timestamptz NOT NULL,
            closed_at timestamptz,
            CONSTRAINT pk_dedup_generations PRIMARY KEY (number),
            CONSTRAINT ck_dedup_generations_number CHECK (number > 0)
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_dedup_generations_open ON dedup_generations ((true)) "
        "WHERE closed_at IS NULL"
    )
    # No open generation (the table emptied by hand or by a test) falls back to 0, so
    # concurrent claims still agree; those rows land in the default partition.
    op.execute(
        """
        CREATE FUNCTION kpi_dedup_generation() RETURNS integer LANGUAGE sql STABLE AS $$
            SELECT coalesce((SELECT number FROM dedup_generations WHERE closed_at IS NULL), 0)
        $$
        """
    )
    op.execute(
        """
        CREATE TABLE processed_events (
            event_id varchar(128) NOT NULL,
            payload_hash char(64) NOT NULL,
            first_seen_at timestamptz NOT NULL DEFAULT now(),
            generation integer NOT NULL DEFAULT kpi_dedup_generation(),
            CONSTRAINT pk_processed_events PRIMARY KEY (event_id, generation)
        ) PARTITION BY RANGE (generation)
        """
    )
    op.execute("CREATE TABLE processed_events_default PARTITION OF processed_events DEFAULT")

    # Existing ids go to generations by age: chunk k holds the ids first seen between
    # (k + 1) and k widths ago, closed k widths ago, so retention drops each chunk once all
    # of its ids are past the horizon (kept forever: all in the open generation).
    now = conn.execute(sa.text("SELECT now()")).scalar_one()
    if width_days is None:
        age_sql = "0"
        oldest = 0
    else:
        age_sql = (
            "GREATEST(0, floor(extract(epoch FROM (CAST(:now AS timestamptz) - first_seen_at)) "
            f"/ {width_days * 86400}))::integer"
        )
        oldest = conn.execute(
            sa.text(f"SELECT coalesce(max({age_sql}), -1) FROM processed_events_old"),
            {"now": now},
        ).scalar_one()
    # Per age chunk the newest first sighting: a clock skewed ahead must not close a
    # generation before an id in it was seen.
    ages = {
        r[0]: r[1]
        for r in conn.execute(
            sa.text(f"SELECT {age_sql}, max(first_seen_at) FROM processed_events_old GROUP BY 1"),
            {"now": now},
        )
    }
    current = oldest + 2 if width_days is not None else 1
    for age in sorted(ages, reverse=True):
        if width_days is None:
            break
        number = oldest - age + 1
        _partition(number)
        conn.execute(
            sa.text(
                "INSERT INTO dedup_generations (number, opened_at, closed_at) "
                "VALUES (:n, CAST(:now AS timestamptz) - make_interval(days => :start), "
                "GREATEST(CAST(:now AS timestamptz) - make_interval(days => :end), :newest))"
            ),
            {
                "n": number,
                "now": now,
                "start": (age + 1) * width_days,
                "end": age * width_days,
                "newest": ages[age],
            },
        )
    _partition(current)
    _partition(current + 1)  # created ahead
    conn.execute(
        sa.text("INSERT INTO dedup_generations (number, opened_at) VALUES (:n, :now)"),
        {"n": current, "now": now},
    )
    gen_sql = f"{oldest} - {age_sql} + 1" if width_days is not None else str(current)
    conn.execute(
        sa.text(
            "INSERT INTO processed_events (event_id, payload_hash, first_seen_at, generation) "
            f"SELECT event_id, payload_hash, first_seen_at, {gen_sql} FROM processed_events_old"
        ),
        {"now": now},
    )
    op.execute("DROP TABLE processed_events_old")


def downgrade() -> None:
    op.execute("LOCK TABLE processed_events IN ACCESS EXCLUSIVE MODE")
    op.execute("ALTER TABLE processed_events RENAME TO processed_events_parted")
    op.execute(
        "ALTER TABLE processed_events_parted RENAME CONSTRAINT pk_processed_events "
        "TO pk_processed_events_parted"
    )
    op.execute(
        """
        CREATE TABLE processed_events (
            event_id varchar(128) NOT NULL,
            payload_hash char(64) NOT NULL,
            first_seen_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_processed_events PRIMARY KEY (event_id)
        )
        """
    )
    # An id lives in one generation only; DISTINCT ON keeps the first claim should it not.
    op.execute(
        """
        INSERT INTO processed_events (event_id, payload_hash, first_seen_at)
        SELECT DISTINCT ON (event_id) event_id, payload_hash, first_seen_at
        FROM processed_events_parted ORDER BY event_id, generation, first_seen_at
        """
    )
    op.execute("DROP TABLE processed_events_parted")  # with its partitions
    op.execute("DROP FUNCTION kpi_dedup_generation()")
    op.execute("DROP TABLE dedup_generations")
    op.execute(
        "CREATE INDEX ix_processed_events_first_seen_at ON processed_events "
        "USING brin (first_seen_at)"
    )
