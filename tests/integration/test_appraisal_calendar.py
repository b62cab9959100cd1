"""Business-hours response time through the real engine (process_batch) and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.scoring.calendar import load_calendar
from services.scoring.engine.handlers import process_batch
from services.scoring.kpi.measure import Measure
from shared.db import session_scope
from shared.events import validate_event_obj

SH = ZoneInfo("Asia/Shanghai")
CN = load_calendar(Path(__file__).resolve().parents[2] / "examples" / "calendar-cn-2026.yaml")
BUSINESS = CN.hours_fn(SH)
RT = "avg_response_time_hours"


def ticket(tid: str, created: str, responded: str, who: str = "s1") -> list[Any]:
    return [
        validate_event_obj(
            {"event_id": f"{tid}-c", "type": "ticket.created", "occurred_at": created,
             "ticket_id": tid}
        ),
        validate_event_obj(
            {"event_id": f"{tid}-r", "type": "ticket.first_response", "occurred_at": responded,
             "ticket_id": tid, "specialist_id": who}
        ),
    ]  # fmt: skip


async def apply(sm: async_sessionmaker[AsyncSession], events: list[Any], hours: Any) -> None:
    async with session_scope(sm) as session:
        await process_batch(session, events, measure=Measure(SH, hours))


async def response_rows(engine: AsyncEngine) -> tuple[dict[Any, Any], dict[Any, Any]]:
    async with engine.connect() as conn:
        daily = await conn.execute(
            text("SELECT specialist_id, day, num, den FROM kpi_daily WHERE metric = :m"), {"m": RT}
        )
        facts = await conn.execute(
            text(
                "SELECT specialist_id, day, sum(num), sum(den) FROM kpi_facts WHERE metric = :m "
                "GROUP BY specialist_id, day"
            ),
            {"m": RT},
        )
        return (
            {(r[0], r[1]): (float(r[2]), int(r[3])) for r in daily if r[3] or r[2]},
            {(r[0], r[1]): (float(r[2]), int(r[3])) for r in facts},
        )


async def test_business_hours_across_weekend_holiday_and_make_up_day(
    clean_db: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    events = (
        ticket("weekend", "2026-03-06T17:00:00+08:00", "2026-03-09T10:00:00+08:00")
        + ticket("qingming", "2026-04-03T17:00:00+08:00", "2026-04-07T10:00:00+08:00")
        + ticket("tiaoxiu", "2026-02-13T17:00:00+08:00", "2026-02-14T10:30:00+08:00")
    )
    await apply(sessionmaker, events, BUSINESS)
    daily, facts = await response_rows(clean_db)
    assert daily == {
        ("s1", dt.date(2026, 3, 9)): (2.0, 1),  # 65 calendar hours
        ("s1", dt.date(2026, 4, 7)): (2.0, 1),  # 89 calendar hours over Qingming
        ("s1", dt.date(2026, 2, 14)): (2.5, 1),  # Saturday, but a 调休 working day
    }
    assert facts == daily


async def test_calendar_hours_stay_the_default(
    clean_db: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await apply(
        sessionmaker, ticket("w", "2026-03-06T17:00:00+08:00", "2026-03-09T10:00:00+08:00"), None
    )
    daily, _ = await response_rows(clean_db)
    assert daily == {("s1", dt.date(2026, 3, 9)): (65.0, 1)}


async def test_switching_the_calendar_keeps_aggregates_exact(
    clean_db: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """A ticket stored under one setting and updated under another moves by the right delta."""
    created, first = ticket("t", "2026-03-06T17:00:00+08:00", "2026-03-09T10:00:00+08:00")
    await apply(sessionmaker, [created, first], None)  # calendar hours: 65 h on 9 March
    # Calendar enabled; an earlier first response (Monday 09:30, another specialist) arrives.
    earlier = validate_event_obj(
        {"event_id": "t-r0", "type": "ticket.first_response",
         "occurred_at": "2026-03-09T09:30:00+08:00", "ticket_id": "t", "specialist_id": "s2"}
    )  # fmt: skip
    await apply(sessionmaker, [earlier], BUSINESS)
    daily, facts = await response_rows(clean_db)
    assert daily == {("s2", dt.date(2026, 3, 9)): (1.5, 1)}  # s1's 65 h fully removed
    assert facts == daily
    # An unrelated event for the same ticket under the calendar changes nothing...
    csat = validate_event_obj(
        {"event_id": "t-s", "type": "survey.csat", "occurred_at": "2026-03-10T09:00:00+08:00",
         "ticket_id": "t", "score": 5}
    )  # fmt: skip
    await apply(sessionmaker, [csat], BUSINESS)
    assert (await response_rows(clean_db))[0] == daily
    # ...and with the calendar switched off a new event re-measures in calendar hours.
    nps = validate_event_obj(
        {"event_id": "t-n", "type": "survey.nps", "occurred_at": "2026-03-10T09:00:00+08:00",
         "ticket_id": "t", "score": 9}
    )  # fmt: skip
    await apply(sessionmaker, [nps], None)
    daily, facts = await response_rows(clean_db)
    assert daily == {("s2", dt.date(2026, 3, 9)): (pytest.approx(64.5), 1)}
    assert facts == daily
