"""The one-statement aggregate writer against the four separate writes it replaced."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.scoring.engine import breakdown_writes
from services.scoring.engine import repository as repo
from services.scoring.engine.aggregate_writes import write_aggregates

TABLES = ("kpi_daily", "kpi_facts", "kpi_channel_daily", "kpi_time_buckets")
# Few keys, so batches hit rows that exist; non-ASCII ids sort by code point in both.
WHO = st.sampled_from(["s1", "s2", "é3", '"q\\'])
DAY = st.sampled_from([dt.date(2026, 9, 1), dt.date(2026, 9, 2)])
METRIC = st.sampled_from(["resolution_rate", "csat"])
SOURCE = st.sampled_from(["ticket:a", "ticket:b", "event:c", "session:d"])
CHANNEL = st.sampled_from(["email", "电话", "", 'a"b\\c', "\x01"])
# Whole numbers, values that cancel only approximately (hour sums), residues under 1e-9,
# and exact zeros: a delta of 0/0 is allowed here although the engine settles them away.
NUM = st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.1, 0.2, -0.3, 2.5, 1e-12, -1e-12, 5e-10])
DEN = st.integers(-2, 2)
PAIR = st.tuples(NUM, DEN)
DELTAS = st.fixed_dictionaries(
    {
        "daily": st.dictionaries(st.tuples(WHO, DAY, METRIC), PAIR, max_size=5),
        "facts": st.dictionaries(st.tuples(WHO, METRIC, DAY, SOURCE), PAIR, max_size=8),
        "channels": st.dictionaries(st.tuples(WHO, DAY, METRIC, CHANNEL), PAIR, max_size=5),
        "buckets": st.dictionaries(
            st.tuples(WHO, DAY, METRIC, st.integers(0, 3)), st.integers(-2, 2), max_size=5
        ),
    }
)


async def _old(conn: asyncpg.Connection, d: dict[str, Any]) -> None:
    # The engine's writes before the single statement (handlers.write_deltas).
    if d["daily"]:
        await repo.add_daily(conn, d["daily"])
    if d["facts"]:
        await repo.add_facts(conn, d["facts"])
    if d["channels"]:
        await breakdown_writes.add_channels(conn, d["channels"])
    if d["buckets"]:
        await breakdown_writes.add_buckets(conn, d["buckets"])


class _Counting:
    """The connection, counting the statements sent (round trips)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.statements = 0

    async def fetch(self, *args: Any) -> Any:
        self.statements += 1
        return await self.conn.fetch(*args)

    async def execute(self, *args: Any) -> Any:
        self.statements += 1
        return await self.conn.execute(*args)


async def _tables(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table in TABLES:
        # updated_at is now() of the transaction: every other column must match exactly.
        cols = "*" if table != "kpi_daily" else "specialist_id, day, metric, num, den"
        rows = await conn.fetch(f"SELECT {cols} FROM {table}")
        out[table] = sorted(tuple(r) for r in rows)
    return out


async def _check(dsn: str, seed: list[dict[str, Any]], batches: list[dict[str, Any]]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"TRUNCATE {', '.join(TABLES)}")
        # Rows that exist before, some of them already at 0/0 (which the old path drops
        # when a delta touches them) or holding a residue below 1e-9.
        for d in seed:
            await _old(conn, {**d, "facts": {}})
            for (who, metric, day, src), (num, den) in d["facts"].items():
                await conn.execute(
                    """
                    INSERT INTO kpi_facts (specialist_id, metric, day, source, num, den)
                    VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING
                    """,
                    who,
                    metric,
                    day,
                    src,
                    num,
                    den,
                )
        for batch in batches:
            tx = conn.transaction()
            await tx.start()
            await _old(conn, batch)
            want = await _tables(conn)
            await tx.rollback()
            counting = _Counting(conn)
            async with conn.transaction():
                await write_aggregates(
                    counting,  # type: ignore[arg-type]
                    batch["daily"],
                    batch["facts"],
                    batch["channels"],
                    batch["buckets"],
                )
                got = await _tables(conn)
            assert got == want
            # No other writer here: rows that cancel are deleted by the statement itself.
            empty = not any(batch.values())
            assert counting.statements == (0 if empty else 1)
    finally:
        await conn.close()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.lists(DELTAS, max_size=2), batches=st.lists(DELTAS, min_size=1, max_size=4))
def test_one_statement_writes_the_same_rows(
    database_url: str, seed: list[dict[str, Any]], batches: list[dict[str, Any]]
) -> None:
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    asyncio.run(_check(dsn, seed, batches))


async def _cancel(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"TRUNCATE {', '.join(TABLES)}")
        key = ("s1", "csat", dt.date(2026, 9, 1), "ticket:a")
        other = ("s1", "csat", dt.date(2026, 9, 1), "ticket:b")
        async with conn.transaction():
            await write_aggregates(conn, {}, {key: (0.1 + 0.2, 1), other: (1.0, 1)}, {}, {})
        # Cancels up to a float residue: removed, in one round trip; ``other`` only moves.
        counting = _Counting(conn)
        async with conn.transaction():
            await write_aggregates(
                counting,  # type: ignore[arg-type]
                {},
                {key: (-0.3, -1), other: (0.0, 0)},
                {},
                {},
            )
        assert counting.statements == 1
        rows = await conn.fetch("SELECT source, num, den FROM kpi_facts")
        assert [tuple(r) for r in rows] == [("ticket:b", 1.0, 1)]
    finally:
        await conn.close()


def test_cancelled_ledger_rows_are_removed(database_url: str) -> None:
    asyncio.run(_cancel(database_url.replace("postgresql+asyncpg://", "postgresql://")))


async def _locked(conn: asyncpg.Connection, table: str, where: str) -> bool:
    """Whether another transaction holds the row's lock (probed without waiting)."""
    try:
        async with conn.transaction():
            await conn.execute(f"SELECT 1 FROM {table} WHERE {where} FOR UPDATE NOWAIT")
    except asyncpg.LockNotAvailableError:
        return True
    return False


async def _order(dsn: str) -> None:
    holder, writer, probe = [await asyncpg.connect(dsn) for _ in range(3)]
    day = dt.date(2026, 9, 1)
    daily = {("s1", day, "csat"): (1.0, 1)}
    facts = {("s1", "csat", day, "ticket:a"): (1.0, 1)}
    channels = {("s1", day, "csat", "email"): (1.0, 1)}
    buckets = {("s1", day, "csat", 1): 1}
    rows = {
        "kpi_daily": "specialist_id = 's1'",
        "kpi_facts": "specialist_id = 's1'",
        "kpi_channel_daily": "specialist_id = 's1'",
        "kpi_time_buckets": "specialist_id = 's1'",
    }
    try:
        await holder.execute(f"TRUNCATE {', '.join(TABLES)}")
        await write_aggregates(holder, daily, facts, channels, buckets)
        # Hold each table's row in turn: the writer must have locked the tables before it
        # (in the order of the separate writes) and none after it, or two replicas running
        # this and the previous release could deadlock on the shared day-bucket rows.
        for n, table in enumerate(TABLES):
            tx = holder.transaction()
            await tx.start()
            await holder.execute(f"SELECT 1 FROM {table} WHERE {rows[table]} FOR UPDATE")
            wtx = writer.transaction()
            await wtx.start()
            task = asyncio.create_task(write_aggregates(writer, daily, facts, channels, buckets))
            for _ in range(100):
                waiting = await probe.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted",
                    writer.get_server_pid(),
                )
                if waiting:
                    break
                await asyncio.sleep(0.02)
            assert waiting, f"the writer did not wait for {table}"
            for other in TABLES[:n]:
                assert await _locked(probe, other, rows[other]), f"{other} after {table}"
            for other in TABLES[n + 1 :]:
                assert not await _locked(probe, other, rows[other]), f"{other} before {table}"
            await tx.rollback()
            await task
            await wtx.rollback()
    finally:
        for c in (holder, writer, probe):
            await c.close()


def test_tables_are_locked_in_the_order_of_the_separate_writes(database_url: str) -> None:
    asyncio.run(_order(database_url.replace("postgresql+asyncpg://", "postgresql://")))
