"""``kpi rescore``: re-measuring stored tickets equals processing their events from scratch."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from chaos.generator import HistoryMaker, deliveries
from kpi.cli import app
from services.scoring.calendar import load_calendar, parse_calendar
from services.scoring.engine.handlers import process_batch
from services.scoring.engine.repository import stored_ticket_ids
from services.scoring.engine.rescore import RescoreResult, rescore_tickets
from services.scoring.kpi.apply import held_by_ticket
from services.scoring.kpi.contributions import HoursFn
from services.scoring.kpi.measure import Measure
from services.scoring.kpi.ticket import TicketState
from shared.catalogue import AVG_RESPONSE_TIME_HOURS, REOPEN_RATE, RESOLUTION_RATE
from shared.db import create_engine, create_sessionmaker, raw_connection, session_scope
from shared.events import Event, TicketFirstResponse, validate_event_obj
from tests.integration.test_appraisal_calendar import ticket
from tests.integration.test_scoring_engine import reset

SH = ZoneInfo("Asia/Shanghai")
CN_PATH = Path(__file__).resolve().parents[2] / "examples" / "calendar-cn-2026.yaml"
CN = load_calendar(CN_PATH).hours_fn(SH)
# A second calendar, so that "the calendar changed" is covered, not only on/off.
LONG_DAYS = parse_calendar(
    {"name": "long-days", "working_hours": "08:00-20:00", "rest_weekdays": ["sunday"]}
).hours_fn(SH)
SETTINGS: tuple[HoursFn | None, ...] = (None, CN, LONG_DAYS)
Aggregates = dict[str, dict[Any, Any]]


async def apply(
    engine: AsyncEngine, events: list[Event], hours: HoursFn | None, sla: float = 24.0
) -> None:
    async with session_scope(create_sessionmaker(engine)) as session:
        await process_batch(session, events, measure=Measure(SH, hours, sla_hours=sla))


async def rescore(
    engine: AsyncEngine, hours: HoursFn | None, *, batch: int = 1000, dry_run: bool = False
) -> RescoreResult:
    """What the command does, batch by batch, summed into one result."""
    total = RescoreResult()
    specialists: set[str] = set()
    after = ""
    sessions = create_sessionmaker(engine)
    while True:
        async with sessions() as session:
            conn = await raw_connection(session)
            ids = await stored_ticket_ids(conn, after, batch)
            if not ids:
                break
            done = await rescore_tickets(conn, ids, Measure(SH, hours), dry_run=dry_run)
            await (session.rollback() if dry_run else session.commit())
        after = ids[-1]
        total.scanned += done.scanned
        total.changed += done.changed
        specialists.update(done.specialists)
    total.specialists = sorted(specialists)
    return total


async def aggregates(engine: AsyncEngine) -> Aggregates:
    """kpi_daily (0/0 rows dropped: they never count), kpi_facts and the issue list."""
    async with engine.connect() as conn:
        daily = await conn.execute(
            text("SELECT specialist_id, day, metric, num, den FROM kpi_daily")
        )
        facts = await conn.execute(
            text("SELECT specialist_id, metric, day, source, num, den FROM kpi_facts")
        )
        issues = await conn.execute(text("SELECT source, issue FROM data_quality_issues"))
        channels = await conn.execute(
            text("SELECT specialist_id, day, metric, channel, num, den FROM kpi_channel_daily")
        )
        buckets = await conn.execute(
            text("SELECT specialist_id, day, metric, bucket, count FROM kpi_time_buckets")
        )
        return {
            # The channel breakdown and the distributions move with the calendar too.
            "channels": {
                (r[0], r[1], r[2], r[3]): (float(r[4]), int(r[5]))
                for r in channels
                if r[5] != 0 or abs(r[4]) > 1e-9
            },
            "buckets": {(r[0], r[1], r[2], r[3]): (0.0, int(r[4])) for r in buckets if r[4]},
            "daily": {
                (r[0], r[1], r[2]): (float(r[3]), int(r[4]))
                for r in daily
                if r[4] != 0 or abs(r[3]) > 1e-9
            },
            "facts": {(r[0], r[1], r[2], r[3]): (float(r[4]), int(r[5])) for r in facts},
            "issues": {(r[0], r[1]): True for r in issues},
        }


async def raw_tables(engine: AsyncEngine) -> list[Any]:
    """Everything rescore may write, exactly as stored (for "wrote nothing" checks)."""
    out: list[Any] = []
    async with engine.connect() as conn:
        for query in (
            "SELECT ticket_id, state::text, updated_at FROM ticket_states ORDER BY 1",
            "SELECT * FROM kpi_daily ORDER BY 1, 2, 3",
            "SELECT * FROM kpi_facts ORDER BY 1, 2, 3, 4",
            "SELECT * FROM kpi_channel_daily ORDER BY 1, 2, 3, 4",
            "SELECT * FROM kpi_time_buckets ORDER BY 1, 2, 3, 4",
            "SELECT source, issue FROM data_quality_issues ORDER BY 1, 2",
            "SELECT specialist_id, reason, version FROM score_outbox ORDER BY 1",
        ):
            out.append([tuple(r) for r in await conn.execute(text(query))])
    return out


async def outbox(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT specialist_id, reason FROM score_outbox"))
        return {r[0]: r[1] for r in rows}


async def clear_outbox(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM score_outbox"))


async def from_scratch(
    engine: AsyncEngine, events: list[Event], hours: HoursFn | None, sla: float = 24.0
) -> Aggregates:
    await reset(engine)
    await apply(engine, events, hours, sla)
    return await aggregates(engine)


def assert_same(got: Aggregates, want: Aggregates) -> None:
    assert got["issues"] == want["issues"]
    for table in ("daily", "facts", "channels", "buckets"):
        g, w = got[table], want[table]
        assert g.keys() == w.keys(), (table, sorted(g.keys() ^ w.keys())[:10])
        for key, (num, den) in w.items():
            assert g[key][1] == den, (table, key, g[key], (num, den))
            assert g[key][0] == pytest.approx(num, abs=1e-6), (table, key, g[key], (num, den))


async def assert_ledger_matches_states(engine: AsyncEngine) -> None:
    """Each ticket's kpi_facts rows are what its stored document says it contributes.

    kpi_daily sums may be right while a share sits under the wrong source (the explain
    view would blame the wrong ticket); this checks every step, not only the end.
    """
    async with engine.connect() as conn:
        docs = await conn.execute(text("SELECT ticket_id, state::text FROM ticket_states"))
        states = {r[0]: orjson.loads(r[1]) for r in docs}
        rows = await conn.execute(
            text(
                "SELECT source, specialist_id, day, metric, num, den FROM kpi_facts "
                "WHERE source LIKE 'ticket:%'"
            )
        )
        facts: dict[str, dict[Any, tuple[float, int]]] = {}
        for r in rows:
            facts.setdefault(r[0].removeprefix("ticket:"), {})[(r[1], r[2], r[3])] = (
                float(r[4]),
                int(r[5]),
            )
    # Any calendar: held_by_ticket then reads the response hours the document says are held.
    measure = Measure(SH, CN)
    for ticket_id in sorted(states.keys() | facts.keys()):
        doc = states.get(ticket_id) or {}
        held = held_by_ticket(doc, TicketState.from_json(doc), measure)[0] if doc else {}
        got = facts.get(ticket_id, {})
        assert got.keys() == held.keys(), (ticket_id, got, held)
        for key, (num, den) in held.items():
            assert got[key][1] == den, (ticket_id, key, got[key], (num, den))
            assert got[key][0] == pytest.approx(num, abs=1e-6), (ticket_id, key, got[key])


def closed(events: list[Event]) -> list[Event]:
    """A ticket answered and resolved at once, so that its other metrics must stay put."""
    first = events[-1]
    assert isinstance(first, TicketFirstResponse) and first.specialist_id is not None
    closure = {"event_id": f"{first.ticket_id}-x", "type": "ticket.closed",
               "occurred_at": first.occurred_at.isoformat(), "ticket_id": first.ticket_id,
               "specialist_id": first.specialist_id, "resolved": True}  # fmt: skip
    return [*events, validate_event_obj(closure)]


EVENTS = (
    closed(ticket("weekend", "2026-03-06T17:00:00+08:00", "2026-03-09T10:00:00+08:00", "s1"))
    + closed(ticket("qingming", "2026-04-03T17:00:00+08:00", "2026-04-07T10:00:00+08:00", "s2"))
    + closed(ticket("same-day", "2026-03-10T10:00:00+08:00", "2026-03-10T11:00:00+08:00", "s3"))
    + ticket("unanswered", "2026-03-10T10:00:00+08:00", "2026-03-10T11:00:00+08:00", "s3")[:1]
)


async def test_rescore_under_a_calendar_equals_processing_under_it(clean_db: AsyncEngine) -> None:
    engine = clean_db
    plain = await from_scratch(engine, EVENTS, None)
    business = await from_scratch(engine, EVENTS, CN)
    assert plain["daily"][("s1", dt.date(2026, 3, 9), AVG_RESPONSE_TIME_HOURS)] == (65.0, 1)
    assert business["daily"][("s1", dt.date(2026, 3, 9), AVG_RESPONSE_TIME_HOURS)] == (2.0, 1)

    await from_scratch(engine, EVENTS, None)
    # (4) A dry run counts what would change and writes nothing.
    stored = await raw_tables(engine)
    dry = await rescore(engine, CN, dry_run=True)
    assert await raw_tables(engine) == stored
    assert (dry.scanned, dry.changed, dry.specialists) == (4, 2, ["s1", "s2"])

    # (1) Calendar switched on: rescoring gives what processing under it gives.
    await clear_outbox(engine)
    done = await rescore(engine, CN)
    assert (done.scanned, done.changed, done.specialists) == (4, 2, ["s1", "s2"])
    assert_same(await aggregates(engine), business)
    assert await outbox(engine) == {"s1": "rescore", "s2": "rescore"}

    # (2) A second run changes nothing and queues nobody.
    await clear_outbox(engine)
    stored = await raw_tables(engine)
    again = await rescore(engine, CN)
    assert (again.scanned, again.changed, again.specialists) == (4, 0, [])
    assert await raw_tables(engine) == stored

    # (3) Calendar switched off: back to the calendar-hour aggregates.
    off = await rescore(engine, None)
    assert (off.changed, off.specialists) == (2, ["s1", "s2"])
    assert_same(await aggregates(engine), plain)
    assert (await rescore(engine, None)).changed == 0

    # The engine carries on from rescored state: a later event moves the ticket exactly.
    await rescore(engine, CN)
    late = validate_event_obj(
        {"event_id": "weekend-r0", "type": "ticket.first_response",
         "occurred_at": "2026-03-09T09:30:00+08:00", "ticket_id": "weekend",
         "specialist_id": "s4"}
    )  # fmt: skip
    await apply(engine, [late], CN)
    got = await aggregates(engine)
    assert_same(got, await from_scratch(engine, [*EVENTS, late], CN))


async def _example(database_url: str, rng: random.Random) -> None:
    engine = create_engine(database_url, pool_size=2, application_name="kpi-rescore-prop")
    try:
        events = HistoryMaker(rng, SH).history(tickets=rng.randint(1, 10))
        delivered = deliveries(rng, events)
        want = [await from_scratch(engine, delivered, hours) for hours in SETTINGS]
        # A history processed under settings that changed along the way (which the stored
        # response hours keep exact), then rescored under each setting in turn.
        await reset(engine)
        i = 0
        while i < len(delivered):
            n = rng.randint(1, 15)
            await apply(engine, delivered[i : i + n], rng.choice(SETTINGS))
            await assert_ledger_matches_states(engine)
            i += n
        batch = rng.randint(1, 4)
        for target in [*rng.sample(range(len(SETTINGS)), len(SETTINGS)), rng.randrange(3)]:
            hours = SETTINGS[target]
            stored = await raw_tables(engine)
            dry = await rescore(engine, hours, batch=batch, dry_run=True)
            assert await raw_tables(engine) == stored
            await clear_outbox(engine)
            done = await rescore(engine, hours, batch=batch)
            assert (done.scanned, done.changed, done.specialists) == (
                dry.scanned,
                dry.changed,
                dry.specialists,
            )
            assert sorted(await outbox(engine)) == done.specialists
            assert_same(await aggregates(engine), want[target])
            await assert_ledger_matches_states(engine)
            stored = await raw_tables(engine)
            again = await rescore(engine, hours, batch=batch)
            assert (again.changed, again.specialists) == (0, [])
            assert await raw_tables(engine) == stored
    finally:
        await engine.dispose()


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.randoms(use_true_random=False))
def test_rescore_equals_from_scratch_for_random_histories(
    database_url: str, seed: random.Random
) -> None:
    asyncio.run(_example(database_url, random.Random(seed.getrandbits(64))))


# The shrunk failing example of the property test: t5's unresolved closure counts for s3 on
# 2026-03-08 (Shanghai); then one batch reopens t5 and brings t1's unresolved closure for the
# same bucket. kpi_daily does not move, but the share passes from ticket:t5 to ticket:t1.
T5_CLOSED = validate_event_obj(
    {"event_id": "e45", "type": "ticket.closed", "occurred_at": "2026-03-07T17:59:59.998Z",
     "ticket_id": "t5", "specialist_id": "s3", "resolved": False}
)  # fmt: skip
T5_REOPENED = validate_event_obj(
    {"event_id": "e47", "type": "ticket.reopened", "occurred_at": "2026-11-01T01:30:00.001+08:00",
     "ticket_id": "t5"}
)  # fmt: skip
T1_CLOSED = validate_event_obj(
    {"event_id": "e15", "type": "ticket.closed", "occurred_at": "2026-03-07T18:59:59.999Z",
     "ticket_id": "t1", "specialist_id": "s3", "resolved": False}
)  # fmt: skip


async def test_a_share_passing_between_tickets_in_one_batch_moves_the_ledger(
    clean_db: AsyncEngine,
) -> None:
    engine = clean_db
    history = [T5_CLOSED, T5_REOPENED, T1_CLOSED]
    want = await from_scratch(engine, history, None)
    only_t1 = {
        ("s3", metric, dt.date(2026, 3, 8), "ticket:t1"): (0.0, 1)
        for metric in (RESOLUTION_RATE, REOPEN_RATE)
    }
    assert want["facts"] == only_t1
    await reset(engine)
    await apply(engine, [T5_CLOSED], None)
    await apply(engine, [T5_REOPENED, T1_CLOSED], None)
    assert (await aggregates(engine))["facts"] == only_t1
    await assert_ledger_matches_states(engine)
    # Rescoring measures from the documents, so it could not have repaired a wrong ledger.
    assert (await rescore(engine, CN)).changed == 0
    assert_same(await aggregates(engine), want)


async def test_rescore_while_the_engine_applies_events(clean_db: AsyncEngine) -> None:
    """Rescoring in small batches next to live batches: no deadlock, no lost update."""
    engine = clean_db
    rng = random.Random(11)
    events = HistoryMaker(rng, SH).history(tickets=40)
    want = await from_scratch(engine, events, CN)
    await reset(engine)
    await apply(engine, events[: len(events) // 2], None)

    async def live() -> None:
        rest = events[len(events) // 2 :]
        for i in range(0, len(rest), 5):
            await apply(engine, rest[i : i + 5], CN)
            await asyncio.sleep(0)

    done, _ = await asyncio.gather(rescore(engine, CN, batch=3), live())
    assert done.changed > 0
    assert_same(await aggregates(engine), want)
    assert (await rescore(engine, CN)).changed == 0


def test_cli_rescore_end_to_end(database_url: str) -> None:
    async def load() -> None:
        engine = create_engine(database_url, pool_size=1, application_name="kpi-rescore-cli")
        try:
            await reset(engine)
            await apply(engine, EVENTS, None)
        finally:
            await engine.dispose()

    asyncio.run(load())
    runner = CliRunner()
    env = {
        "KPI_DATABASE_URL": database_url,
        "KPI_TIMEZONE": "Asia/Shanghai",
        "KPI_BUSINESS_CALENDAR": str(CN_PATH),
    }

    def run(*args: str) -> str:
        result = runner.invoke(app, ["rescore", *args], env=env)
        assert result.exit_code == 0, result.output
        return " ".join(result.output.split())

    out = run("--dry-run", "--batch", "3")
    assert "business hours of calendar cn-2026" in out
    assert "scanned 4 tickets, 2 tickets would change, 2 specialists affected" in out
    out = run("--batch", "3")
    assert "scanned 4 tickets, 2 tickets changed, 2 specialists affected (queued" in out
    assert "scanned 4 tickets, 0 tickets changed, 0 specialists affected" in run()
    # Every state was written today: a date in the future selects nothing.
    assert "scanned 0 tickets" in run("--since", "2999-01-01")
    assert "scanned 4 tickets written since 2000-01-01, 0 tickets changed" in run(
        "--since", "2000-01-01"
    )

    bad = runner.invoke(app, ["rescore", "--since", "yesterday"], env=env)
    assert bad.exit_code == 2
    assert "--since" in bad.output

    env["KPI_BUSINESS_CALENDAR"] = ""
    out = run()
    assert "response times in calendar hours" in out
    assert "2 tickets changed" in out
