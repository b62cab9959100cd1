"""Scoring write-side SQL against a reference: claims, state locks, aggregates, migration 0006."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import asyncpg
import orjson
import pytest
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrations import alembic_config, upgrade
from services.scoring.engine import repository as repo
from shared.embedded import EmbeddedPostgres

TABLES = "processed_events, ticket_states, kpi_daily, kpi_facts"
IDS = st.sampled_from([f"e{i}" for i in range(12)])
DAYS = st.sampled_from([dt.date(2026, 9, 1) + dt.timedelta(days=i) for i in range(3)])
WHO = st.sampled_from(["s1", "s2", "é3"])  # non-ASCII: PostgreSQL sorts it like Python
METRIC = st.sampled_from(["resolution_rate", "csat", "avg_response_time_hours"])
# Small integers plus values that cancel only approximately (float residue of hour sums).
NUM = st.sampled_from([0.0, 1.0, -1.0, 0.1, 0.2, -0.3, 2.5, 1e-12])
DEN = st.integers(-2, 2)
DELTA = st.tuples(NUM, DEN).filter(lambda v: v != (0.0, 0))
BATCH = st.fixed_dictionaries(
    {
        "ids": st.lists(IDS, unique=True, max_size=6),
        "tickets": st.lists(IDS, unique=True, max_size=4),
        "daily": st.dictionaries(st.tuples(WHO, DAYS, METRIC), DELTA, max_size=6),
        "sources": st.lists(
            st.sampled_from(["ticket:a", "ticket:b", "event:c"]), min_size=1, unique=True
        ),
    }
)


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _check_batches(dsn: str, batches: list[dict[str, Any]]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"TRUNCATE {TABLES}")
        claimed_ref: set[str] = set()
        states_ref: dict[str, dict[str, Any]] = {}
        daily_ref: dict[tuple[Any, ...], tuple[float, int]] = {}
        facts_ref: dict[tuple[Any, ...], tuple[float, int]] = {}
        for n, batch in enumerate(batches):
            async with conn.transaction():
                ids = batch["ids"]
                if ids:
                    got = await repo.claim_events(conn, ids, [f"{i:0<64}"[:64] for i in ids])
                    assert got == set(ids) - claimed_ref
                    claimed_ref |= set(ids)
                if batch["tickets"]:
                    docs = await repo.lock_states(
                        conn, "ticket_states", "ticket_id", batch["tickets"]
                    )
                    assert docs == {t: states_ref.get(t, {}) for t in batch["tickets"]}
                    new = {t: {"n": n, "t": t, "x": [1.5, None, "ü"]} for t in batch["tickets"]}
                    await repo.save_states(
                        conn,
                        "ticket_states",
                        "ticket_id",
                        {t: orjson.dumps(d) for t, d in new.items()},
                    )
                    states_ref.update(new)
                facts: dict[tuple[Any, ...], tuple[float, int]] = {}
                for (who, day, metric), (num, den) in batch["daily"].items():
                    old = daily_ref.get((who, day, metric), (0.0, 0))
                    daily_ref[(who, day, metric)] = (old[0] + num, old[1] + den)
                    for source in batch["sources"]:
                        fact = (who, metric, day, source)
                        facts[fact] = (num, den)
                        old = facts_ref.get(fact, (0.0, 0))
                        facts_ref[fact] = (old[0] + num, old[1] + den)
                if batch["daily"]:
                    await repo.add_daily(conn, batch["daily"])
                    await repo.add_facts(conn, facts)
        daily = {
            (r["specialist_id"], r["day"], r["metric"]): (r["num"], r["den"])
            for r in await conn.fetch("SELECT * FROM kpi_daily")
        }
        assert daily.keys() == daily_ref.keys()
        for key, (num, den) in daily_ref.items():
            assert daily[key][1] == den and daily[key][0] == pytest.approx(num, abs=1e-9)
        facts_db = {
            (r["specialist_id"], r["metric"], r["day"], r["source"]): (r["num"], r["den"])
            for r in await conn.fetch("SELECT * FROM kpi_facts")
        }
        # A fact that cancelled out (den 0, num ~0) explains nothing and is removed.
        live = {k: v for k, v in facts_ref.items() if not (v[1] == 0 and abs(v[0]) < 1e-9)}
        assert facts_db.keys() == live.keys()
        for key, (num, den) in live.items():
            assert facts_db[key][1] == den and facts_db[key][0] == pytest.approx(num, abs=1e-9)
        stored = await conn.fetch("SELECT ticket_id, state::text AS s FROM ticket_states")
        assert {r["ticket_id"]: orjson.loads(r["s"]) for r in stored} == states_ref
    finally:
        await conn.close()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=st.lists(BATCH, min_size=1, max_size=5))
def test_write_side_equals_reference(database_url: str, batches: list[dict[str, Any]]) -> None:
    asyncio.run(_check_batches(asyncpg_dsn(database_url), batches))


async def _two(dsn: str) -> tuple[asyncpg.Connection, asyncpg.Connection]:
    return await asyncpg.connect(dsn), await asyncpg.connect(dsn)


@pytest.mark.parametrize("first_commits", [True, False], ids=["commit", "rollback"])
async def test_concurrent_claims_take_each_id_once(database_url: str, first_commits: bool) -> None:
    a, b = await _two(asyncpg_dsn(database_url))
    tag = uuid.uuid4().hex[:8]
    x, y, z = f"{tag}-x", f"{tag}-y", f"{tag}-z"
    try:
        ta = a.transaction()
        await ta.start()
        assert await repo.claim_events(a, [x, y], ["0" * 64] * 2) == {x, y}
        async with b.transaction():
            # y is being inserted by a: b waits for a's outcome instead of guessing.
            waiting = asyncio.create_task(repo.claim_events(b, [z, y], ["1" * 64] * 2))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            await (ta.commit() if first_commits else ta.rollback())
            got = await asyncio.wait_for(waiting, 10)
        assert got == ({z} if first_commits else {y, z})
    finally:
        await a.close()
        await b.close()


async def test_first_events_of_a_ticket_in_two_transactions_lose_no_update(
    database_url: str,
) -> None:
    a, b = await _two(asyncpg_dsn(database_url))
    ticket = f"t-{uuid.uuid4().hex[:8]}"
    try:
        ta = a.transaction()
        await ta.start()
        assert await repo.lock_states(a, "ticket_states", "ticket_id", [ticket]) == {ticket: {}}
        await repo.save_states(a, "ticket_states", "ticket_id", {ticket: b'{"by":"a"}'})
        async with b.transaction():
            waiting = asyncio.create_task(
                repo.lock_states(b, "ticket_states", "ticket_id", [ticket])
            )
            await asyncio.sleep(0.3)
            assert not waiting.done()
            await ta.commit()
            # b's insert waited for a's row; b must then read what a committed, not "{}".
            assert await asyncio.wait_for(waiting, 10) == {ticket: {"by": "a"}}
    finally:
        await a.close()
        await b.close()


async def _table_shape(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        types = {
            r["table_name"]: r["data_type"]
            for r in await conn.fetch(
                "SELECT table_name, data_type FROM information_schema.columns WHERE "
                "column_name = 'state' AND table_name IN ('ticket_states', 'training_sessions')"
            )
        }
        options = {
            r["relname"]: r["reloptions"]
            for r in await conn.fetch(
                "SELECT relname, reloptions FROM pg_class WHERE relname IN "
                "('kpi_daily', 'kpi_facts', 'ticket_states', 'score_outbox', 'processed_events')"
            )
        }
        rows = await conn.fetch("SELECT ticket_id, state::text AS s FROM ticket_states")
        return {
            "types": types,
            "options": options,
            "states": {r["ticket_id"]: orjson.loads(r["s"]) for r in rows},
        }
    finally:
        await conn.close()


def test_migration_0006_downgrades_and_upgrades_with_data(pg_server: EmbeddedPostgres) -> None:
    url = pg_server.create_database(f"kpi_m6_{uuid.uuid4().hex[:8]}")
    dsn = asyncpg_dsn(url)
    upgrade(url, "0005")
    doc = {"v": 1, "closed": [["e1", "2026-09-19T11:52:31+00:00", "s1", True]], "n": 1.5}

    async def seed() -> None:
        conn = await asyncpg.connect(dsn)
        await conn.execute(
            "INSERT INTO ticket_states (ticket_id, state) VALUES ('t1', $1::jsonb)",
            orjson.dumps(doc).decode(),
        )
        await conn.close()

    asyncio.run(seed())
    upgrade(url, "0006")
    after = asyncio.run(_table_shape(dsn))
    assert after["types"] == {"ticket_states": "json", "training_sessions": "json"}
    assert after["options"]["kpi_daily"] == ["fillfactor=80"]
    assert after["options"]["ticket_states"] == ["fillfactor=80"]
    assert after["options"]["processed_events"] is None
    assert after["states"] == {"t1": doc}
    command.downgrade(alembic_config(url), "0005")
    before = asyncio.run(_table_shape(dsn))
    assert before["types"] == {"ticket_states": "jsonb", "training_sessions": "jsonb"}
    assert all(v is None for v in before["options"].values())
    assert before["states"] == {"t1": doc}


TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))


@settings(max_examples=300, deadline=None)
@given(values=st.lists(TEXT, max_size=8))
def test_text_array_literal_round_trips(database_url: str, values: list[str]) -> None:
    async def check() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            literal = repo._text_array(values)
            assert await conn.fetchval("SELECT $1::text::text[]", literal) == values
            # Same elements, in the same order, as the binary array this replaces.
            assert await conn.fetchval("SELECT $1::text[]", values) == values
        finally:
            await conn.close()

    asyncio.run(check())


async def test_a_nul_in_a_value_is_rejected_like_before(database_url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        with pytest.raises(asyncpg.exceptions.CharacterNotInRepertoireError):
            await conn.fetchval("SELECT $1::text[]", ["a\x00b"])
        with pytest.raises(asyncpg.exceptions.CharacterNotInRepertoireError):
            await conn.fetchval("SELECT $1::text::text[]", repo._text_array(["a\x00b", "c"]))
    finally:
        await conn.close()
