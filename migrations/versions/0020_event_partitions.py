"""Time partitions: processed_events by claim generation, kpi_facts by month; retention drops.

Revision ID: 0020
Revises: 0018
Create Date: 2026-12-08
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Must match services/scoring/engine/partitions.py (a migration never imports the service).
GENERATIONS = 2


def _partition(number: int) -> None:
    op.execute(
        f"CREATE TABLE processed_events_g{number:06d} PARTITION OF processed_events "
        f"FOR VALUES FROM ({number}) TO ({number + 1})"
    )


# kpi_facts: one partition per month of `day`; days further than this from the upgrade (events
# may be dated from year 1 to 9999) stay in the default partition until a month is created.
LEDGER_PAST_YEARS = 20
LEDGER_AHEAD_MONTHS = 2


def _month(day: dt.date, add: int = 0) -> dt.date:
    index = day.year * 12 + day.month - 1 + add
    return dt.date(index // 12, index % 12 + 1, 1)


def _ledger_partition(lower: dt.date) -> None:
    op.execute(
        f"CREATE TABLE kpi_facts_m{lower:%Y%m} PARTITION OF kpi_facts "
        f"FOR VALUES FROM ('{lower.isoformat()}') TO ('{_month(lower, 1).isoformat()}') "
        "WITH (fillfactor = 90)"
    )


def upgrade() -> None:
    _upgrade_dedup()
    _upgrade_ledger()


def _upgrade_ledger() -> None:
    conn = op.get_bind()
    op.execute("LOCK TABLE kpi_facts IN ACCESS EXCLUSIVE MODE")
    op.execute("ALTER TABLE kpi_facts RENAME TO kpi_facts_old")
    op.execute("ALTER TABLE kpi_facts_old RENAME CONSTRAINT pk_kpi_facts TO pk_kpi_facts_old")
    op.execute(
        """
        CREATE TABLE kpi_facts (
            specialist_id varchar(128) NOT NULL,
            day date NOT NULL,
            metric varchar(40) NOT NULL,
            source varchar(200) NOT NULL,
            num double precision NOT NULL,
            den bigint NOT NULL,
            CONSTRAINT pk_kpi_facts PRIMARY KEY (specialist_id, metric, day, source)
        ) PARTITION BY RANGE (day)
        """
    )
    op.execute(
        "CREATE TABLE kpi_facts_default PARTITION OF kpi_facts DEFAULT WITH (fillfactor = 90)"
    )
    # Facts of days before kept_from were dropped by KPI_LEDGER_RETENTION_DAYS (no row: none).
    op.execute(
        """
        CREATE TABLE ledger_retention (
            id boolean NOT NULL DEFAULT true,
            kept_from date NOT NULL,
            CONSTRAINT pk_ledger_retention PRIMARY KEY (id),
            CONSTRAINT ck_ledger_retention_one CHECK (id)
        )
        """
    )
    today = conn.execute(sa.text("SELECT CAST(now() AS date)")).scalar_one()
    first = dt.date(today.year - LEDGER_PAST_YEARS, 1, 1)
    last = _month(today, LEDGER_AHEAD_MONTHS)
    months = {
        r[0]
        for r in conn.execute(
            sa.text(
                "SELECT DISTINCT CAST(date_trunc('month', day) AS date) FROM kpi_facts_old "
                "WHERE day >= :first AND day < :end"
            ),
            {"first": first, "end": _month(last, 1)},
        )
    }
    months |= {_month(today, k) for k in range(LEDGER_AHEAD_MONTHS + 1)}
    for lower in sorted(months):
        _ledger_partition(lower)
    op.execute(
        "INSERT INTO kpi_facts (specialist_id, day, metric, source, num, den) "
        "SELECT specialist_id, day, metric, source, num, den FROM kpi_facts_old"
    )
    op.execute("DROP TABLE kpi_facts_old")


def _upgrade_dedup() -> None:
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
    _downgrade_ledger()
    _downgrade_dedup()


def _downgrade_ledger() -> None:
    op.execute("LOCK TABLE kpi_facts IN ACCESS EXCLUSIVE MODE")
    op.execute("ALTER TABLE kpi_facts RENAME TO kpi_facts_parted")
    op.execute("ALTER TABLE kpi_facts_parted RENAME CONSTRAINT pk_kpi_facts TO pk_kpi_facts_parted")
    op.execute(
        """
        CREATE TABLE kpi_facts (
            specialist_id varchar(128) NOT NULL,
            day date NOT NULL,
            metric varchar(40) NOT NULL,
            source varchar(200) NOT NULL,
            num double precision NOT NULL,
            den bigint NOT NULL,
            CONSTRAINT pk_kpi_facts PRIMARY KEY (specialist_id, metric, day, source)
        ) WITH (fillfactor = 90)
        """
    )
    op.execute(
        "INSERT INTO kpi_facts (specialist_id, day, metric, source, num, den) "
        "SELECT specialist_id, day, metric, source, num, den FROM kpi_facts_parted"
    )
    op.execute("DROP TABLE kpi_facts_parted")
    op.execute("DROP TABLE ledger_retention")


def _downgrade_dedup() -> None:
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
