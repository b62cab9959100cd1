"""Dedup across processed_events' generations: exact within the horizon, races, drops, 0020."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from migrations import alembic_config, upgrade
from services.scoring.engine import partition_sql, partitions
from services.scoring.engine import repository as repo
from services.scoring.engine.retention import DedupRetention
from shared.db import create_engine, create_sessionmaker
from shared.embedded import EmbeddedPostgres
from shared.settings import load_settings

T0 = dt.datetime(2026, 9, 1, 12, 0, tzinfo=dt.UTC)
HASH = "0" * 64


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture(scope="module")
def parts_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """A database of its own: these tests switch and drop generations."""
    url = pg_server.create_database(f"kpi_parts_{uuid.uuid4().hex[:8]}")
    upgrade(url, "head")
    yield url


@pytest.fixture
async def engine(parts_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(parts_url, pool_size=3, application_name="kpi-tests-parts")
    yield eng
    await eng.dispose()


async def reset(dsn: str) -> None:
    """No generation, no partition but the default one: the state of a fresh test."""
    conn = await asyncpg.connect(dsn)
    try:
        numbers, _ = await partition_sql.dedup_layout(conn)
        for n in numbers:
            await conn.execute(f"DROP TABLE {partitions.partition_name(n)}")
        await conn.execute("TRUNCATE processed_events, dedup_generations")
    finally:
        await conn.close()


class Clock:
    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at


def worker(engine: AsyncEngine, days: int, clock: Clock) -> DedupRetention:
    settings = load_settings(dedup_retention_days=days)
    return DedupRetention(settings, create_sessionmaker(engine), clock=clock)


async def claim(dsn: str, ids: list[str]) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            return await repo.claim_events(conn, ids, [HASH] * len(ids))
    finally:
        await conn.close()


async def where(dsn: str) -> dict[str, list[tuple[str, int]]]:
    """Every stored copy of each id: (partition, generation)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT event_id, tableoid::regclass::text AS part, generation FROM processed_events"
        )
    finally:
        await conn.close()
    out: dict[str, list[tuple[str, int]]] = {}
    for r in rows:
        out.setdefault(r["event_id"], []).append((r["part"], r["generation"]))
    return out


async def test_an_id_claimed_in_an_older_generation_is_a_duplicate_until_dropped(
    parts_url: str, engine: AsyncEngine
) -> None:
    dsn = asyncpg_dsn(parts_url)
    await reset(dsn)
    clock = Clock(T0)
    retention = worker(engine, 90, clock)  # generations of 45 days
    assert await retention.purge() == 0
    assert await claim(dsn, ["a"]) == {"a"}
    clock.at = T0 + dt.timedelta(days=44, hours=23)
    await retention.purge()
    assert await claim(dsn, ["a", "b"]) == {"b"}
    clock.at = T0 + dt.timedelta(days=45)
    await retention.purge()  # generation 2 opens
    assert await claim(dsn, ["a", "b", "c"]) == {"c"}
    clock.at = T0 + dt.timedelta(days=90)
    await retention.purge()  # generation 3 opens
    assert await claim(dsn, ["a", "b", "c", "d"]) == {"d"}
    placed = await where(dsn)
    assert placed == {
        "a": [("processed_events_g000001", 1)],
        "b": [("processed_events_g000001", 1)],
        "c": [("processed_events_g000002", 2)],
        "d": [("processed_events_g000003", 3)],
    }
    # Generation 1 closed at T0+45d: its ids are past the horizon only from T0+135d on.
    clock.at = T0 + dt.timedelta(days=134, hours=23)
    assert await retention.purge() == 0
    assert await claim(dsn, ["a"]) == set()
    clock.at = T0 + dt.timedelta(days=135)
    assert await retention.purge() == 2
    assert retention.dropped == [1]
    # a, b forgotten (past the horizon by definition); c (first seen at T0+45d) is not.
    assert await claim(dsn, ["a", "c"]) == {"a"}
    numbers, generations = await partition_sql.dedup_layout(await asyncpg.connect(dsn))
    assert 1 not in numbers and [g.number for g in generations] == [2, 3, 4]


async def test_zero_retention_keeps_one_generation_forever(
    parts_url: str, engine: AsyncEngine
) -> None:
    dsn = asyncpg_dsn(parts_url)
    await reset(dsn)
    clock = Clock(T0)
    retention = worker(engine, 0, clock)
    await retention.purge()
    assert await claim(dsn, ["a"]) == {"a"}
    clock.at = T0 + dt.timedelta(days=4000)
    assert await retention.purge() == 0
    assert await claim(dsn, ["a", "b"]) == {"b"}
    assert {g for copies in (await where(dsn)).values() for _, g in copies} == {1}


async def test_without_an_open_generation_or_its_partition_claims_use_the_default_partition(
    parts_url: str, engine: AsyncEngine
) -> None:
    dsn = asyncpg_dsn(parts_url)
    await reset(dsn)
    assert await claim(dsn, ["a"]) == {"a"}  # no generation yet: generation 0
    assert await claim(dsn, ["a"]) == set()
    clock = Clock(T0)
    retention = worker(engine, 90, clock)
    await retention.purge()  # opens generation 1
    conn = await asyncpg.connect(dsn)
    await conn.execute("DROP TABLE processed_events_g000001")  # lost, say
    await conn.close()
    assert await claim(dsn, ["a", "b"]) == {"b"}  # b: no partition for 1 yet, default
    assert await claim(dsn, ["b"]) == set()
    clock.at = T0 + dt.timedelta(days=45)
    await retention.purge()  # generation 2, with its partition
    assert await claim(dsn, ["a", "b", "c"]) == {"c"}
    assert await where(dsn) == {
        "a": [("processed_events_default", 0)],
        "b": [("processed_events_default", 1)],
        "c": [("processed_events_g000002", 2)],
    }


async def _pid(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT pg_backend_pid()"))


async def waits_for(dsn: str, event: str, pid: int | None = None) -> bool:
    """Whether backend ``pid`` (any of this database when None) waits for a lock of kind
    ``event`` (advisory, transactionid)."""
    conn = await asyncpg.connect(dsn)
    try:
        return bool(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND wait_event = $1 AND datname = current_database() "
                "AND ($2::int IS NULL OR pid = $2)",
                event,
                pid,
            )
        )
    finally:
        await conn.close()


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll a condition (never a sleep standing in for one) for up to 10 s."""
    for _ in range(1000):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def wait_blocked(dsn: str, pid: int, event: str) -> None:
    await until(lambda: waits_for(dsn, event, pid), f"backend {pid} waits for {event}")


async def test_a_claim_racing_a_generation_switch_stays_exact(
    parts_url: str, engine: AsyncEngine
) -> None:
    """A claims x into generation 1 and has not committed; the switch to 2 starts; B
    claims x. Without the claim lock B would write x into 2 without seeing A's row."""
    dsn = asyncpg_dsn(parts_url)
    await reset(dsn)
    clock = Clock(T0)
    retention = worker(engine, 90, clock)
    await retention.purge()
    a, b = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    pid_b = await _pid(b)
    # Generation 3's partition exists already, so the switch changes no table (whose lock
    # would order the two claims by itself): only the claim lock stands between them.
    assert await partition_sql.create_dedup_partition(a, 3)
    try:
        ta = a.transaction()
        await ta.start()
        assert await repo.claim_events(a, ["x", "y"], [HASH] * 2) == {"x", "y"}
        clock.at = T0 + dt.timedelta(days=45)
        switch = asyncio.create_task(retention.rotate())

        async def switch_waits_or_is_done() -> bool:
            return switch.done() or await waits_for(dsn, "advisory")

        await until(switch_waits_or_is_done, "the switch waits for the claim under way")
        tb = b.transaction()
        await tb.start()
        b_claim = asyncio.create_task(repo.claim_events(b, ["x", "z"], [HASH] * 2))

        async def b_waits_or_is_done() -> bool:
            return b_claim.done() or await waits_for(dsn, "advisory", pid_b)

        await until(b_waits_or_is_done, "B's claim waits behind the switch")
        await ta.commit()
        assert await asyncio.wait_for(switch, 10) is True
        assert await asyncio.wait_for(b_claim, 10) == {"z"}
        await tb.commit()
    finally:
        await a.close()
        await b.close()
    assert await where(dsn) == {
        "x": [("processed_events_g000001", 1)],
        "y": [("processed_events_g000001", 1)],
        "z": [("processed_events_g000002", 2)],
    }


@pytest.mark.parametrize("first_commits", [True, False], ids=["commit", "rollback"])
async def test_two_claimers_of_the_same_ids_take_each_once(
    parts_url: str, engine: AsyncEngine, first_commits: bool
) -> None:
    dsn = asyncpg_dsn(parts_url)
    await reset(dsn)
    clock = Clock(T0)
    retention = worker(engine, 90, clock)
    await retention.purge()
    assert await claim(dsn, ["old"]) == {"old"}
    clock.at = T0 + dt.timedelta(days=45)
    await retention.purge()  # "old" now sits in an older generation
    a, b = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    pid_b = await _pid(b)
    try:
        ta = a.transaction()
        await ta.start()
        assert await repo.claim_events(a, ["x", "y", "old"], [HASH] * 3) == {"x", "y"}
        async with b.transaction():
            waiting = asyncio.create_task(repo.claim_events(b, ["z", "y", "old"], [HASH] * 3))
            await wait_blocked(dsn, pid_b, "transactionid")  # on a's row of y
            await (ta.commit() if first_commits else ta.rollback())
            got = await asyncio.wait_for(waiting, 10)
        assert got == ({"z"} if first_commits else {"y", "z"})
    finally:
        await a.close()
        await b.close()
    assert all(len(copies) == 1 for copies in (await where(dsn)).values())


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 30),
            st.lists(st.sampled_from([f"e{i}" for i in range(8)]), unique=True, max_size=5),
        ),
        min_size=1,
        max_size=14,
    )
)
def test_claims_match_a_model_of_the_ids_seen_within_the_horizon(
    parts_url: str, steps: list[tuple[int, list[str]]]
) -> None:
    """Reference model: an id first seen less than the retention ago is a duplicate; one
    first seen longer ago than retention + a generation + two steps is new again (the
    worker runs only at each step); in between either, and never a duplicate of nothing."""
    asyncio.run(_model_run(asyncpg_dsn(parts_url), parts_url, steps))


async def _model_run(dsn: str, url: str, steps: list[tuple[int, list[str]]]) -> None:
    days = 20
    width = partitions.open_days(days)
    assert width is not None
    await reset(dsn)
    eng = create_engine(url, pool_size=2, application_name="kpi-tests-parts-model")
    try:
        clock = Clock(T0)
        retention = worker(eng, days, clock)
        first_seen: dict[str, dt.datetime] = {}
        for advance, ids in steps:
            clock.at += dt.timedelta(days=advance)
            await retention.purge()
            if not ids:
                continue
            new = await claim(dsn, ids)
            for i in ids:
                seen = first_seen.get(i)
                if seen is None:
                    assert i in new, f"{i} was never claimed but is a duplicate"
                elif clock.at - seen < dt.timedelta(days=days):
                    assert i not in new, f"{i} first seen {clock.at - seen} ago counted again"
                elif clock.at - seen > dt.timedelta(days=days + width + 60):
                    assert i in new, f"{i} first seen {clock.at - seen} ago still remembered"
                if i in new:
                    first_seen[i] = clock.at
        assert all(len(c) == 1 for c in (await where(dsn)).values())
    finally:
        await eng.dispose()


def test_migration_0020_converts_existing_ids_and_facts_in_place_and_back(
    pg_server: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KPI_DEDUP_RETENTION_DAYS", "90")  # generations of 45 days
    url = pg_server.create_database(f"kpi_m20_{uuid.uuid4().hex[:8]}")
    dsn = asyncpg_dsn(url)
    # The revision 0020 follows (re-chained as migrations merge).
    previous = ScriptDirectory.from_config(alembic_config(url)).get_revision("0020").down_revision
    assert isinstance(previous, str)
    upgrade(url, previous)

    async def run(sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    # 300 ids first seen 0..149 days ago (two per day), and one from the future (skew).
    asyncio.run(
        run(
            """
            INSERT INTO processed_events (event_id, payload_hash, first_seen_at)
            SELECT 'id-' || i, lpad(i::text, 64, '0'), now() - (i / 2) * interval '1 day'
            FROM generate_series(0, 299) AS i
            UNION ALL SELECT 'future', lpad('f', 64, '0'), now() + interval '1 hour'
            """
        )
    )
    # The explain ledger: a day far in the past, one 400 days ago, today, one far ahead.
    asyncio.run(
        run(
            """
            INSERT INTO kpi_facts (specialist_id, day, metric, source, num, den)
            SELECT 's1', d, 'csat', 'ticket:' || d::text, 1.5, 2
            FROM unnest(ARRAY[date '0001-01-01', CAST(now() AS date) - 400,
                              CAST(now() AS date), date '9999-12-31']) AS d
            """
        )
    )
    facts_sql = "SELECT * FROM kpi_facts ORDER BY day"
    facts = asyncio.run(run(facts_sql))
    before = asyncio.run(run("SELECT * FROM processed_events ORDER BY event_id"))
    upgrade(url, "0020")
    assert asyncio.run(run(facts_sql)) == facts
    ledger = asyncio.run(run("SELECT day, tableoid::regclass::text AS part FROM kpi_facts"))
    parts = {r["day"]: r["part"] for r in ledger}
    assert parts[dt.date(1, 1, 1)] == parts[dt.date(9999, 12, 31)] == "kpi_facts_default"
    near = [d for d in parts if 1 < d.year < 9999]
    assert [parts[d] for d in near] == [partitions.ledger_partition_name(d) for d in near]
    rows = asyncio.run(
        run(
            """
            SELECT p.event_id, p.payload_hash, p.first_seen_at, p.generation,
                   p.tableoid::regclass::text AS part, g.opened_at, g.closed_at
            FROM processed_events p JOIN dedup_generations g ON g.number = p.generation
            ORDER BY p.event_id
            """
        )
    )
    assert [(r["event_id"], r["payload_hash"], r["first_seen_at"]) for r in rows] == [
        (r["event_id"], r["payload_hash"], r["first_seen_at"]) for r in before
    ]
    # 150 days in chunks of 45: four closed generations (the newest holds the future id and
    # closes after it), then the open one, empty.
    assert sorted({r["generation"] for r in rows}) == [1, 2, 3, 4]
    open_gen = asyncio.run(run("SELECT number FROM dedup_generations WHERE closed_at IS NULL"))
    assert [r[0] for r in open_gen] == [5]
    for r in rows:
        assert r["part"] == partitions.partition_name(r["generation"])
        # The property retention relies on: a generation closes after its ids were seen.
        assert r["first_seen_at"] <= r["closed_at"]
        assert r["event_id"] == "future" or r["opened_at"] <= r["first_seen_at"]

    async def claims() -> set[str]:
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                return await repo.claim_events(conn, ["id-0", "id-299", "new"], [HASH] * 3)
        finally:
            await conn.close()

    # Claims after the upgrade are exact across the copied generations.
    assert asyncio.run(claims()) == {"new"}
    command.downgrade(alembic_config(url), previous)
    after = asyncio.run(run("SELECT * FROM processed_events WHERE event_id <> 'new' ORDER BY 1"))
    assert [tuple(r) for r in after] == [tuple(r) for r in before]
    assert asyncio.run(run("SELECT to_regclass('dedup_generations') IS NULL"))[0][0]
    assert asyncio.run(run(facts_sql)) == facts
    shape = asyncio.run(
        run("SELECT relkind::text AS relkind, reloptions FROM pg_class WHERE relname = 'kpi_facts'")
    )
    assert (shape[0]["relkind"], shape[0]["reloptions"]) == ("r", ["fillfactor=90"])
    upgrade(url, "0020")
