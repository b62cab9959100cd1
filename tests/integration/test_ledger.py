"""``kpi ledger verify|repair``: a ledger damaged as the old release left it is found, fixed."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from chaos.generator import HistoryMaker
from kpi.cli import app
from services.scoring.engine.ledger import (
    repair_ledger,
    repair_tickets,
    stored_tickets,
    verify_ledger,
)
from services.scoring.kpi.measure import Measure
from shared.catalogue import RESOLUTION_RATE
from shared.db import create_engine, create_sessionmaker, raw_connection, session_scope
from shared.events import Event, validate_event_obj
from tests.integration.test_rescore import (
    CN,
    CN_PATH,
    SH,
    T1_CLOSED,
    T5_CLOSED,
    T5_REOPENED,
    aggregates,
    apply,
    from_scratch,
    raw_tables,
)
from tests.integration.test_scoring_engine import reset
from tests.ledger_checks import assert_ledger_matches_states

ENV = {"KPI_TIMEZONE": "Asia/Shanghai", "KPI_BUSINESS_CALENDAR": ""}
_ids = itertools.count()


def event(kind: str, at: str, ticket_id: str, **fields: Any) -> Event:
    return validate_event_obj(
        {"event_id": f"e{next(_ids)}", "type": kind, "occurred_at": at, "ticket_id": ticket_id}
        | fields
    )


def answered_and_closed(
    ticket_id: str, who: str, created: str, responded: str, *, resolved: bool = True
) -> list[Event]:
    return [
        event("ticket.created", created, ticket_id, specialist_id=who),
        event("ticket.first_response", responded, ticket_id, specialist_id=who),
        event("ticket.closed", responded, ticket_id, specialist_id=who, resolved=resolved),
    ]


async def execute(engine: AsyncEngine, sql: str, **params: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(sql), params)


async def move_share(engine: AsyncEngine, metric: str, src: str, dst: str) -> None:
    """What the old release could leave: a bucket's share under another ticket's row (the
    bucket's sum, and kpi_daily, unchanged)."""
    await execute(
        engine,
        """
        WITH gone AS (DELETE FROM kpi_facts WHERE metric = :m AND source = :src
                      RETURNING specialist_id, metric, day, num, den)
        INSERT INTO kpi_facts (specialist_id, metric, day, source, num, den)
        SELECT specialist_id, metric, day, :dst, num, den FROM gone
        ON CONFLICT (specialist_id, metric, day, source) DO UPDATE
        SET num = kpi_facts.num + excluded.num, den = kpi_facts.den + excluded.den
        """,
        m=metric,
        src=f"ticket:{src}",
        dst=f"ticket:{dst}",
    )


async def daily(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return [
            tuple(r) for r in await conn.execute(text("SELECT * FROM kpi_daily ORDER BY 1, 2, 3"))
        ]


def cli(database_url: str, *args: str, code: int = 0, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(
        app, ["ledger", *args], env={"KPI_DATABASE_URL": database_url, **ENV, **(env or {})}
    )
    assert result.exit_code == code, result.output
    return " ".join(result.output.split())


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def scratch(database_url: str) -> AsyncEngine:
    return create_engine(database_url, pool_size=2, application_name="kpi-ledger-test")


def test_the_old_release_s_ledger_is_found_and_repaired_once(database_url: str) -> None:
    """The shrunk example of issue rescore-facts, as the old release stored it: t5's closure
    was replaced by t1's in one batch, kpi_daily did not move, so neither did kpi_facts."""

    async def damage() -> list[Any]:
        engine = await scratch(database_url)
        try:
            await reset(engine)
            await apply(engine, [T5_CLOSED], None)
            await apply(engine, [T5_REOPENED, T1_CLOSED], None)
            await move_share(engine, RESOLUTION_RATE, "t1", "t5")
            return await daily(engine)
        finally:
            await engine.dispose()

    before = run(damage())
    out = cli(database_url, "verify", code=1)
    assert "MISMATCH" in out
    assert "checked 2 tickets: 2 tickets whose ledger rows disagree" in out
    assert "('t1', 't5'), 2 rows off" in out
    assert "0 day buckets whose ledger sum differs" in out

    out = cli(database_url, "repair", "--dry-run")
    assert "would rewrite the ledger rows of 2 tickets (2 rows out, 2 rows in)" in out
    assert "2 tickets whose ledger rows disagree" in cli(database_url, "verify", code=1)

    out = cli(database_url, "repair", "--batch", "1")
    assert "rewrote the ledger rows of 2 tickets (2 rows out, 2 rows in)" in out

    async def after() -> tuple[list[Any], list[Any]]:
        engine = await scratch(database_url)
        try:
            await assert_ledger_matches_states(engine, SH)
            return await daily(engine), await raw_tables(engine)
        finally:
            await engine.dispose()

    now, stored = run(after())
    assert now == before  # kpi_daily is not touched
    out = cli(database_url, "verify")
    assert "ledger verify: clean" in out
    assert "checked 2 tickets: 0 tickets whose ledger rows disagree with the stored ticket" in out
    out = cli(database_url, "repair")
    assert "0 tickets whose ledger rows disagree" in out
    assert "rewrote the ledger rows of 0 tickets (0 rows out, 0 rows in)" in out
    assert run(after())[1] == stored


def test_verify_reports_buckets_whose_ledger_sum_differs_and_repair_leaves_them(
    database_url: str,
) -> None:
    async def damage() -> None:
        engine = await scratch(database_url)
        try:
            await reset(engine)
            await apply(engine, answered_and_closed("t1", "s1", "2026-03-10T09:00:00+08:00",
                                                    "2026-03-10T10:00:00+08:00"), None)  # fmt: skip
            await execute(
                engine, "UPDATE kpi_daily SET den = den + 1 WHERE metric = :m", m=RESOLUTION_RATE
            )
        finally:
            await engine.dispose()

    run(damage())
    out = cli(database_url, "verify", code=1)
    assert "0 tickets whose ledger rows disagree" in out
    assert "1 day bucket whose ledger sum differs from kpi_daily" in out
    assert "'s1' resolution_rate 2026-03-10: kpi_daily 1/2, ledger 1/1" in out
    assert "rewrote the ledger rows of 0 tickets" in cli(database_url, "repair")
    assert "1 day bucket whose ledger sum differs" in cli(database_url, "verify", code=1)


def test_business_hours_are_compared_as_stored(database_url: str) -> None:
    """Under a calendar the ledger holds the business hours stored in each document: the
    check reads those (whatever KPI_BUSINESS_CALENDAR says now), not a recomputation."""
    weekend = answered_and_closed("weekend", "s1", "2026-03-06T17:00:00+08:00",
                                  "2026-03-09T10:00:00+08:00")  # fmt: skip
    monday = answered_and_closed("monday", "s1", "2026-03-09T09:00:00+08:00",
                                 "2026-03-09T11:30:00+08:00")  # fmt: skip

    async def damage() -> None:
        engine = await scratch(database_url)
        try:
            await reset(engine)
            await apply(engine, weekend + monday, CN)
            await assert_ledger_matches_states(engine, SH)
            # Both response times count for s1 on 2026-03-09: 2 business hours and 2.5.
            await execute(
                engine,
                """
                UPDATE kpi_facts SET num = CASE source WHEN 'ticket:weekend' THEN 4.5 ELSE 0 END
                WHERE metric = 'avg_response_time_hours'
                """,
            )
        finally:
            await engine.dispose()

    run(damage())
    calendar = {"KPI_BUSINESS_CALENDAR": str(CN_PATH)}
    for env in (calendar, {}):
        out = cli(database_url, "verify", code=1, env=env)
        assert "2 tickets whose ledger rows disagree" in out
        assert "('monday', 'weekend'), 2 rows off" in out
    assert "calendar cn-2026" in cli(database_url, "repair", env=calendar)
    for env in (calendar, {}):
        assert "ledger verify: clean" in cli(database_url, "verify", env=env)

    async def check() -> None:
        engine = await scratch(database_url)
        try:
            await assert_ledger_matches_states(engine, SH)
            facts = (await aggregates(engine))["facts"]
            hours = {k[3]: v for k, v in facts.items() if k[1] == "avg_response_time_hours"}
            assert hours == {"ticket:weekend": (2.0, 1), "ticket:monday": (2.5, 1)}
        finally:
            await engine.dispose()

    run(check())


ODD = (
    "工单-１",
    "票" * 128,
    "z" * 127 + "工",
    "[red]x[/]",
    "ticket:nested",
    'q"uote\\back',
    "a b",
    "a",
    "B",
    "Ä",
    "😀",
)


def test_odd_ticket_ids(database_url: str) -> None:
    """CJK, 128 characters, markup, quotes, ids that prefix each other, astral characters:
    the scan pairs each ticket with its own rows, and the output quotes them harmlessly."""
    history: list[Event] = []
    for tid in ODD:
        history += answered_and_closed(tid, "专员一", "2026-03-10T09:00:00+08:00",
                                       "2026-03-10T10:00:00+08:00")  # fmt: skip

    async def load(damaged: bool) -> None:
        engine = await scratch(database_url)
        try:
            await reset(engine)
            await apply(engine, history, None)
            if damaged:
                await move_share(engine, RESOLUTION_RATE, ODD[1], ODD[0])
                await move_share(engine, RESOLUTION_RATE, ODD[3], ODD[2])
                # A share under a ticket that was never stored.
                await move_share(engine, "followup_rate", ODD[4], "ghost 幽灵")
        finally:
            await engine.dispose()

    run(load(damaged=False))
    assert f"checked {len(ODD)} tickets: 0 tickets" in cli(database_url, "verify")
    run(load(damaged=True))
    out = cli(database_url, "verify", code=1)
    assert f"checked {len(ODD) + 1} tickets: 6 tickets whose ledger rows disagree" in out
    assert "'[red]x[/]'" in out and "'ghost 幽灵'" in out and "'工单-１'" in out
    assert "rewrote the ledger rows of 6 tickets" in cli(database_url, "repair", "--batch", "2")
    assert "ledger verify: clean" in cli(database_url, "verify")

    async def check() -> None:
        engine = await scratch(database_url)
        try:
            await assert_ledger_matches_states(engine, SH)
        finally:
            await engine.dispose()

    run(check())


async def test_a_ticket_scored_between_the_read_and_the_repair(clean_db: AsyncEngine) -> None:
    """The repair reads the ledger in one snapshot and rewrites later, under the lock: a
    ticket the engine moved meanwhile has its rows read again (the engine subtracted its
    share from where its document said, a row the read never saw)."""
    engine = clean_db
    await apply(engine, answered_and_closed("a", "s1", "2026-03-10T09:00:00+08:00",
                                            "2026-03-10T10:00:00+08:00"), None)  # fmt: skip
    await apply(engine, answered_and_closed("b", "s1", "2026-03-10T09:00:00+08:00",
                                            "2026-03-10T11:00:00+08:00"), None)  # fmt: skip
    await move_share(engine, RESOLUTION_RATE, "a", "b")
    measure = Measure(SH)
    sessions = create_sessionmaker(engine)
    async with sessions() as session:
        read = [t async for t in stored_tickets(await raw_connection(session))]
    assert [t.ticket_id for t in read] == ["a", "b"]
    # Reopened and closed again on another day: the engine moves "a" off 2026-03-10.
    later = [
        event("ticket.reopened", "2026-03-11T09:00:00+08:00", "a"),
        event("ticket.closed", "2026-03-12T09:00:00+08:00", "a", specialist_id="s1",
              resolved=True),
    ]  # fmt: skip
    await apply(engine, later, None)
    async with session_scope(sessions) as session:
        _, _, repaired = await repair_tickets(await raw_connection(session), read, measure)
    assert repaired == 2
    await assert_ledger_matches_states(engine, SH)
    # A ticket found off, then fixed by someone else before the lock: nothing to write.
    async with session_scope(sessions) as session:
        assert await repair_tickets(await raw_connection(session), read, measure) == (0, 0, 0)
    assert (await verify_ledger(sessions, measure)).clean


async def damage_randomly(engine: AsyncEngine, rng: random.Random) -> int:
    """Move shares between tickets' rows of the same bucket; returns how many moved."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT specialist_id, metric, day, array_agg(source ORDER BY source) "
                "FROM kpi_facts WHERE source LIKE 'ticket:%' GROUP BY 1, 2, 3 "
                "HAVING count(*) > 1 ORDER BY 1, 2, 3"
            )
        )
        buckets = [tuple(r) for r in rows]
    moved = 0
    for who, metric, day, sources in buckets:
        if rng.random() < 0.5:
            src, dst = rng.sample(list(sources), 2)
            await execute(
                engine,
                """
                WITH gone AS (DELETE FROM kpi_facts WHERE specialist_id = :w AND metric = :m
                              AND day = :d AND source = :src RETURNING num, den)
                UPDATE kpi_facts f SET num = f.num + gone.num, den = f.den + gone.den FROM gone
                WHERE specialist_id = :w AND metric = :m AND day = :d AND source = :dst
                """,
                w=who,
                m=metric,
                d=day,
                src=src,
                dst=dst,
            )
            moved += 1
    return moved


async def test_repair_while_the_engine_applies_events(clean_db: AsyncEngine) -> None:
    """Repairing in small batches next to live batches: no deadlock, nothing lost, and the
    ledger is right at the end (kpi_daily as processing everything from scratch)."""
    engine = clean_db
    rng = random.Random(5)
    events = HistoryMaker(rng, SH).history(tickets=60)
    want = await from_scratch(engine, events, CN)
    await reset(engine)
    await apply(engine, events[: len(events) // 2], CN)
    assert await damage_randomly(engine, rng) > 3
    measure = Measure(SH, CN)

    async def live() -> None:
        rest = events[len(events) // 2 :]
        for i in range(0, len(rest), 4):
            await apply(engine, rest[i : i + 4], CN)
            await asyncio.sleep(0)

    sessions = create_sessionmaker(engine)
    done, _ = await asyncio.wait_for(
        asyncio.gather(repair_ledger(sessions, measure, batch=2), live()), timeout=120
    )
    assert done.repaired > 3
    got = await aggregates(engine)
    assert_close(got["daily"], want["daily"])
    await assert_ledger_matches_states(engine, SH)
    report = await verify_ledger(sessions, measure)
    assert report.clean, report
    again = await repair_ledger(sessions, measure)
    assert (again.check.mismatching, again.repaired) == (0, 0)


def assert_close(got: dict[Any, tuple[float, int]], want: dict[Any, tuple[float, int]]) -> None:
    assert got.keys() == want.keys()
    for key, (num, den) in want.items():
        assert got[key][1] == den and abs(got[key][0] - num) < 1e-6, (key, got[key], num)


async def test_a_ticket_only_in_the_ledger(clean_db: AsyncEngine) -> None:
    engine = clean_db
    await apply(engine, answered_and_closed("t", "s1", "2026-03-10T09:00:00+08:00",
                                            "2026-03-10T10:00:00+08:00"), None)  # fmt: skip
    await move_share(engine, RESOLUTION_RATE, "t", "gone")
    sessions = create_sessionmaker(engine)
    report = await verify_ledger(sessions, Measure(SH))
    assert (report.check.tickets, report.check.mismatching, report.check.rows_off) == (2, 2, 2)
    assert report.check.examples == ["gone", "t"]
    assert not report.clean
    dry = await repair_ledger(sessions, Measure(SH), dry_run=True)
    # t's five other rows are rewritten with it (delete and insert).
    assert (dry.repaired, dry.rows_deleted, dry.rows_written) == (2, 6, 6)
    assert (await verify_ledger(sessions, Measure(SH))).check.mismatching == 2
    await repair_ledger(sessions, Measure(SH))
    await assert_ledger_matches_states(engine, SH)
    assert (await verify_ledger(sessions, Measure(SH))).clean


async def test_days_the_ledger_retention_dropped_are_not_a_mismatch(clean_db: AsyncEngine) -> None:
    """KPI_LEDGER_RETENTION_DAYS drops old months of kpi_facts on purpose (kpi_daily keeps
    them): verify must not report them, and repair must not write them back."""
    engine = clean_db
    await apply(engine, answered_and_closed("old", "s1", "2026-03-10T09:00:00+08:00",
                                            "2026-03-10T10:00:00+08:00"), None)  # fmt: skip
    await apply(engine, answered_and_closed("new", "s1", "2026-05-10T09:00:00+08:00",
                                            "2026-05-10T10:00:00+08:00"), None)  # fmt: skip
    await execute(engine, "DELETE FROM kpi_facts WHERE day < '2026-04-01'")
    await execute(
        engine,
        "INSERT INTO ledger_retention (kept_from) VALUES ('2026-04-01') "
        "ON CONFLICT (id) DO UPDATE SET kept_from = excluded.kept_from",
    )
    sessions = create_sessionmaker(engine)
    measure = Measure(SH)
    try:
        report = await verify_ledger(sessions, measure)
        assert report.clean, (report.check, report.bucket_examples)
        repaired = await repair_ledger(sessions, measure)
        assert (repaired.repaired, repaired.rows_written) == (0, 0)
        # A damaged ticket of a kept day is still found and repaired.
        await move_share(engine, RESOLUTION_RATE, "new", "other")
        assert (await verify_ledger(sessions, measure)).check.mismatching == 2
        await repair_ledger(sessions, measure)
        assert (await verify_ledger(sessions, measure)).clean
        async with engine.connect() as conn:
            kept = await conn.scalar(text("SELECT min(day) FROM kpi_facts"))
        assert kept is not None and kept >= dt.date(2026, 4, 1)
    finally:
        await execute(engine, "DELETE FROM ledger_retention")
