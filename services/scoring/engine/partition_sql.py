"""Upkeep SQL of the time partitions: dedup generations and the explain ledger's months."""

from __future__ import annotations

import datetime as dt

from services.scoring.db import Conn
from services.scoring.engine import partitions
from services.scoring.engine.partitions import Generation
from services.scoring.engine.repository import DEDUP_CLAIM_LOCK_KEY

# Any constant works; it only has to be the same in every scoring process.
LEDGER_LOCK_KEY = 0x6B70695F6C656467

# -- dedup generations -----------------------------------------------------------------


async def dedup_layout(conn: Conn) -> tuple[list[int], list[Generation]]:
    """The generations that have a partition, and the generations' history."""
    names = await conn.fetch(
        """
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'processed_events'::regclass
        """
    )
    numbers = sorted(
        n for n in (partitions.partition_generation(r[0]) for r in names) if n is not None
    )
    rows = await conn.fetch(
        "SELECT number, opened_at, closed_at FROM dedup_generations ORDER BY number"
    )
    return numbers, [Generation(r["number"], r["opened_at"], r["closed_at"]) for r in rows]


async def lock_dedup_exclusive(conn: Conn, timeout: str = "10s") -> None:
    """Wait for the claims under way to commit and hold new ones off until this commits."""
    await conn.execute(f"SET LOCAL lock_timeout = '{timeout}'")
    await conn.execute("SELECT pg_advisory_xact_lock($1)", DEDUP_CLAIM_LOCK_KEY)


async def create_dedup_partition(conn: Conn, generation: int) -> bool:
    """Create a generation's partition unless it exists; True if created."""
    name = partitions.partition_name(generation)
    if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
        return False
    # The name and bounds are built from an int, never from input.
    await conn.execute(
        f"CREATE TABLE {name} PARTITION OF processed_events "
        f"FOR VALUES FROM ({int(generation)}) TO ({int(generation) + 1})"
    )
    return True


async def open_dedup_generation(conn: Conn, generation: int, at: dt.datetime) -> None:
    """Close the open generation at ``at`` and open ``generation`` (under the exclusive
    claim lock, with its partition in place)."""
    await conn.execute("UPDATE dedup_generations SET closed_at = $1 WHERE closed_at IS NULL", at)
    await conn.execute(
        "INSERT INTO dedup_generations (number, opened_at) VALUES ($1, $2)", generation, at
    )


async def count_dedup_partition(conn: Conn, generation: int) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM {partitions.partition_name(generation)}"))


async def drop_dedup_partition(conn: Conn, generation: int) -> None:
    """Drop a generation's ids whole (under the exclusive claim lock)."""
    await conn.execute(f"DROP TABLE IF EXISTS {partitions.partition_name(generation)}")
    await conn.execute("DELETE FROM dedup_generations WHERE number = $1", generation)


# -- the explain ledger's month partitions ---------------------------------------------


async def ledger_months(conn: Conn) -> list[dt.date]:
    """Months that have a kpi_facts partition."""
    names = await conn.fetch(
        """
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'kpi_facts'::regclass
        """
    )
    return sorted(
        m for m in (partitions.ledger_partition_month(r[0]) for r in names) if m is not None
    )


async def create_ledger_partition(conn: Conn, month: dt.date, timeout: str = "10s") -> bool:
    """Create a month's kpi_facts partition unless it exists; True if created.

    Facts of that month already in the default partition (dated ahead of the partitions)
    move into it in the same transaction, with writers of kpi_facts held off meanwhile.
    """
    name = partitions.ledger_partition_name(month)
    if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
        return False
    lower, upper = month.isoformat(), partitions.month_start(month, 1).isoformat()
    await conn.execute(f"SET LOCAL lock_timeout = '{timeout}'")
    # Writers take ROW EXCLUSIVE on kpi_facts before its partitions: taking the parent first
    # keeps the order the same and no fact can reach the default partition meanwhile.
    await conn.execute("LOCK TABLE kpi_facts IN SHARE ROW EXCLUSIVE MODE")
    # Names and bounds are built from dates, never from input.
    await conn.execute(
        f"CREATE TABLE {name} (LIKE kpi_facts INCLUDING DEFAULTS) WITH (fillfactor = 90)"
    )
    await conn.execute(
        f"""
        WITH moved AS (
            DELETE FROM kpi_facts_default WHERE day >= '{lower}' AND day < '{upper}'
            RETURNING specialist_id, day, metric, source, num, den
        )
        INSERT INTO {name} (specialist_id, day, metric, source, num, den)
        SELECT specialist_id, day, metric, source, num, den FROM moved
        """
    )
    await conn.execute(
        f"ALTER TABLE kpi_facts ATTACH PARTITION {name} FOR VALUES FROM ('{lower}') TO ('{upper}')"
    )
    return True


async def ledger_kept_from(conn: Conn) -> dt.date | None:
    value = await conn.fetchval("SELECT kept_from FROM ledger_retention")
    return value if isinstance(value, dt.date) else None


async def set_ledger_kept_from(conn: Conn, kept_from: dt.date) -> None:
    """Stop writing facts before ``kept_from`` (never moves back)."""
    await conn.execute(
        """
        INSERT INTO ledger_retention (id, kept_from) VALUES (true, $1)
        ON CONFLICT (id) DO UPDATE
        SET kept_from = GREATEST(ledger_retention.kept_from, excluded.kept_from)
        """,
        kept_from,
    )


async def drop_ledger_partition(conn: Conn, month: dt.date, timeout: str = "10s") -> int:
    """Drop a month of facts whole; returns how many rows it held."""
    name = partitions.ledger_partition_name(month)
    await conn.execute(f"SET LOCAL lock_timeout = '{timeout}'")
    await conn.execute("LOCK TABLE kpi_facts IN SHARE ROW EXCLUSIVE MODE")
    rows = int(await conn.fetchval(f"SELECT count(*) FROM {name}"))
    await conn.execute(f"DROP TABLE {name}")
    return rows


async def purge_ledger_default(conn: Conn, before: dt.date, limit: int) -> int:
    """Delete up to ``limit`` facts of the default partition dated before ``before``."""
    return int(
        await conn.fetchval(
            """
            WITH gone AS (
                DELETE FROM kpi_facts_default WHERE ctid = ANY(ARRAY(
                    SELECT ctid FROM kpi_facts_default WHERE day < $1 LIMIT $2))
                RETURNING 1
            )
            SELECT count(*) FROM gone
            """,
            before,
            limit,
        )
    )
