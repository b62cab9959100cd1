"""Time partitions: processed_events by claim week, dropped whole by the dedup retention.

Revision ID: 0020
Revises: 0015
Create Date: 2026-12-08
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Must match services/scoring/engine/partitions.py (a migration never imports the service).
ORIGIN = dt.date(1970, 1, 5)  # a Monday: weeks run Monday..Sunday, UTC
WIDTH_DAYS = 7
BUCKET_SQL = (
    "date '1970-01-05' + (((first_seen_at AT TIME ZONE 'UTC')::date - date '1970-01-05') / 7) * 7"
)


def _floor(day: dt.date) -> dt.date:
    return ORIGIN + dt.timedelta(days=(day - ORIGIN).days // WIDTH_DAYS * WIDTH_DAYS)


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def upgrade() -> None:
    conn = op.get_bind()
    # Claims wait (a batch transaction at most) instead of failing: the copy runs under this
    # lock and the new table takes the old one's name in the same transaction.
    op.execute("LOCK TABLE processed_events IN ACCESS EXCLUSIVE MODE")
    op.execute("ALTER TABLE processed_events RENAME TO processed_events_old")
    op.execute(
        "ALTER TABLE processed_events_old RENAME CONSTRAINT pk_processed_events "
        "TO pk_processed_events_old"
    )
    op.execute("DROP INDEX ix_processed_events_first_seen_at")
    # The open bucket (closed_at IS NULL) is the partition every claim writes to; it changes
    # only under the exclusive claim lock (docs/engine.md, "Dedup partitions").
    op.execute(
        """
        CREATE TABLE dedup_buckets (
            lower date NOT NULL,
            upper date NOT NULL,
            opened_at timestamptz NOT NULL,
            closed_at timestamptz,
            CONSTRAINT pk_dedup_buckets PRIMARY KEY (lower),
            CONSTRAINT ck_dedup_buckets_range CHECK (upper > lower)
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_dedup_buckets_open ON dedup_buckets ((true)) "
        "WHERE closed_at IS NULL"
    )
    # No open bucket (a table emptied by hand or by a test) falls back to one constant, so
    # concurrent claims still agree on it; its rows land in the default partition.
    op.execute(
        """
        CREATE FUNCTION kpi_dedup_bucket() RETURNS date LANGUAGE sql STABLE AS $$
            SELECT coalesce(
                (SELECT lower FROM dedup_buckets WHERE closed_at IS NULL), '-infinity'::date)
        $$
        """
    )
    op.execute(
        """
        CREATE TABLE processed_events (
            event_id varchar(128) NOT NULL,
            payload_hash char(64) NOT NULL,
            first_seen_at timestamptz NOT NULL DEFAULT now(),
            bucket date NOT NULL DEFAULT kpi_dedup_bucket(),
            CONSTRAINT pk_processed_events PRIMARY KEY (event_id, bucket)
        ) PARTITION BY RANGE (bucket)
        """
    )
    op.execute("CREATE TABLE processed_events_default PARTITION OF processed_events DEFAULT")

    now = conn.execute(sa.text("SELECT now()")).scalar_one()
    current = _floor(now.astimezone(dt.UTC).date())
    weeks = [
        r[0]
        for r in conn.execute(
            sa.text(
                f"SELECT DISTINCT LEAST({BUCKET_SQL}, CAST(:cur AS date)) "
                "FROM processed_events_old ORDER BY 1"
            ),
            {"cur": current},
        )
    ]
    lowers = sorted({*weeks, current, current + dt.timedelta(days=WIDTH_DAYS)})
    for lower in lowers:
        upper = lower + dt.timedelta(days=WIDTH_DAYS)
        op.execute(
            f"CREATE TABLE processed_events_p{lower:%Y%m%d} PARTITION OF processed_events "
            f"FOR VALUES FROM ('{lower.isoformat()}') TO ('{upper.isoformat()}')"
        )
        if lower > current:
            continue  # created ahead, opened by the retention worker's switch
        conn.execute(
            sa.text(
                "INSERT INTO dedup_buckets (lower, upper, opened_at, closed_at) "
                "VALUES (:lower, :upper, :opened, :closed)"
            ),
            {
                "lower": lower,
                "upper": upper,
                "opened": min(_midnight(lower), now),
                # Every copied id of a past week was first seen before its end.
                "closed": None if lower == current else _midnight(upper),
            },
        )
    conn.execute(
        sa.text(
            "INSERT INTO processed_events (event_id, payload_hash, first_seen_at, bucket) "
            f"SELECT event_id, payload_hash, first_seen_at, LEAST({BUCKET_SQL}, "
            "CAST(:cur AS date)) FROM processed_events_old"
        ),
        {"cur": current},
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
    # An id lives in one partition only; DISTINCT ON keeps the first claim should it not.
    op.execute(
        """
        INSERT INTO processed_events (event_id, payload_hash, first_seen_at)
        SELECT DISTINCT ON (event_id) event_id, payload_hash, first_seen_at
        FROM processed_events_parted ORDER BY event_id, bucket, first_seen_at
        """
    )
    op.execute("DROP TABLE processed_events_parted")  # drops its partitions
    op.execute("DROP FUNCTION kpi_dedup_bucket()")
    op.execute("DROP TABLE dedup_buckets")
    op.execute(
        "CREATE INDEX ix_processed_events_first_seen_at ON processed_events "
        "USING brin (first_seen_at)"
    )
