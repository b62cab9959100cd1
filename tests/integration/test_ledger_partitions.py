"""The explain ledger (kpi_facts) by month: created ahead, default partition, ledger retention."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from migrations import upgrade
from services.scoring.engine import partition_sql, partitions
from services.scoring.engine import repository as repo
from services.scoring.engine.ledger_retention import LedgerRetention
from shared.db import create_engine, create_sessionmaker
from shared.embedded import EmbeddedPostgres
from shared.settings import load_settings

FAR_PAST = dt.date(1, 1, 1)
FAR_FUTURE = dt.date(9999, 12, 31)


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture
def ledger_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """A database of its own per test: these tests drop months of kpi_facts."""
    url = pg_server.create_database(f"kpi_ledger_{uuid.uuid4().hex[:8]}")
    upgrade(url, "head")
    yield url


@pytest.fixture
async def engine(ledger_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(ledger_url, pool_size=2, application_name="kpi-tests-ledger")
    yield eng
    await eng.dispose()


def worker(engine: AsyncEngine, days: int, today: dt.date) -> LedgerRetention:
    at = dt.datetime.combine(today, dt.time(12), tzinfo=dt.UTC)
    return LedgerRetention(
        load_settings(ledger_retention_days=days), create_sessionmaker(engine), clock=lambda: at
    )


async def add(dsn: str, days: list[dt.date], source: str = "ticket:t") -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await repo.add_facts(
                conn, {("s1", "resolution_rate", d, source): (1.0, 1) for d in days}
            )
            await repo.add_daily(conn, {("s1", d, "resolution_rate"): (1.0, 1) for d in days})
    finally:
        await conn.close()


async def placed(dsn: str) -> dict[dt.date, str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT day, tableoid::regclass::text AS part FROM kpi_facts")
    finally:
        await conn.close()
    return {r["day"]: r["part"] for r in rows}


async def daily(dsn: str) -> dict[dt.date, tuple[float, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT day, num, den FROM kpi_daily")
    finally:
        await conn.close()
    return {r["day"]: (r["num"], r["den"]) for r in rows}


async def test_days_without_a_month_go_to_the_default_and_move_when_it_is_created(
    ledger_url: str, engine: AsyncEngine
) -> None:
    dsn = asyncpg_dsn(ledger_url)
    ahead = dt.date(2031, 7, 10)  # beyond the months the migration created
    await add(dsn, [FAR_PAST, FAR_FUTURE, ahead])
    assert await placed(dsn) == {
        FAR_PAST: "kpi_facts_default",
        FAR_FUTURE: "kpi_facts_default",
        ahead: "kpi_facts_default",
    }
    assert await worker(engine, 0, dt.date(2031, 6, 15)).run_once() == 0
    assert (await placed(dsn))[ahead] == "kpi_facts_m203107"
    assert (await placed(dsn))[FAR_FUTURE] == "kpi_facts_default"
    conn = await asyncpg.connect(dsn)
    try:
        months = await partition_sql.ledger_months(conn)
    finally:
        await conn.close()
    assert {dt.date(2031, 6, 1), dt.date(2031, 7, 1), dt.date(2031, 8, 1)} <= set(months)
    # The moved fact is still one row and still adds up.
    await add(dsn, [ahead])
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT num, den FROM kpi_facts WHERE day = $1", ahead)
    finally:
        await conn.close()
    assert (row["num"], row["den"]) == (2.0, 2)


async def test_ledger_retention_drops_whole_months_and_keeps_aggregates(
    ledger_url: str, engine: AsyncEngine
) -> None:
    dsn = asyncpg_dsn(ledger_url)
    today = dt.date(2027, 6, 15)
    kept_from = dt.date(2027, 3, 1)  # the month holding today - 90 days (2027-03-17)
    days = [FAR_PAST, dt.date(2027, 1, 5), dt.date(2027, 2, 28), kept_from, dt.date(2027, 6, 1)]
    await worker(engine, 0, today).run_once()  # months through 2027-08, nothing dropped
    await worker(engine, 0, dt.date(2027, 1, 1)).run_once()
    await add(dsn, days)
    before = await daily(dsn)
    assert await worker(engine, 0, today).run_once() == 0  # 0 = keep forever
    retention = worker(engine, 90, today)
    assert await retention.run_once() == 3
    assert dt.date(2027, 1, 1) in retention.dropped and dt.date(2027, 2, 1) in retention.dropped
    assert all(m < kept_from for m in retention.dropped)
    assert set(await placed(dsn)) == {kept_from, dt.date(2027, 6, 1)}
    assert await daily(dsn) == before  # the KPI values are untouched
    # A late change to a dropped day moves kpi_daily but writes no half fact.
    await add(dsn, [dt.date(2027, 2, 28), kept_from])
    assert set(await placed(dsn)) == {kept_from, dt.date(2027, 6, 1)}
    assert (await daily(dsn))[dt.date(2027, 2, 28)] == (2.0, 2)
    conn = await asyncpg.connect(dsn)
    try:
        assert await partition_sql.ledger_kept_from(conn) == kept_from
        months = await partition_sql.ledger_months(conn)
    finally:
        await conn.close()
    assert min(months) == kept_from
    assert await retention.run_once() == 0
    # The cut-off never moves back (a shorter clock or a longer retention later).
    assert await worker(engine, 400, today).run_once() == 0
    conn = await asyncpg.connect(dsn)
    try:
        assert await partition_sql.ledger_kept_from(conn) == kept_from
    finally:
        await conn.close()


def test_month_calendar() -> None:
    assert partitions.month_start(dt.date(2026, 12, 31), 1) == dt.date(2027, 1, 1)
    assert partitions.month_start(dt.date(2026, 1, 31), -1) == dt.date(2025, 12, 1)
    assert partitions.ledger_kept_from(dt.date(2027, 6, 15), 0) is None
    assert partitions.ledger_kept_from(dt.date(2027, 6, 15), 90) == dt.date(2027, 3, 1)
    months = [dt.date(2027, m, 1) for m in range(1, 7)]
    assert partitions.ledger_droppable(months, dt.date(2027, 3, 1)) == months[:2]
    assert partitions.ledger_partition_month("kpi_facts_m202703") == dt.date(2027, 3, 1)
    assert partitions.ledger_partition_month("kpi_facts_default") is None


async def test_creating_a_month_waits_for_a_batch_writing_its_facts_then_moves_them(
    ledger_url: str, engine: AsyncEngine
) -> None:
    """A batch has written a fact of a month with no partition yet (default partition) and
    not committed; creating that month waits for it and moves the fact, none is lost."""
    dsn = asyncpg_dsn(ledger_url)
    day = dt.date(2031, 7, 10)
    await worker(engine, 0, dt.date(2031, 4, 15)).run_once()  # through June: July is next
    batch, watcher = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        tx = batch.transaction()
        await tx.start()
        await repo.add_facts(batch, {("s1", "csat", day, "ticket:t"): (1.0, 1)})
        creating = asyncio.create_task(worker(engine, 0, dt.date(2031, 6, 15)).run_once())

        async def waits() -> bool:
            return creating.done() or bool(
                await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND wait_event = 'relation' AND datname = current_database()"
                )
            )

        for _ in range(1000):  # poll the condition, never a sleep standing in for it
            if await waits():
                break
            await asyncio.sleep(0.01)
        assert not creating.done()
        await tx.commit()
        assert await asyncio.wait_for(creating, 10) == 0
    finally:
        await batch.close()
        await watcher.close()
    assert (await placed(dsn))[day] == "kpi_facts_m203107"
