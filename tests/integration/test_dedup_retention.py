"""Replay horizon: applied event ids older than KPI_DEDUP_RETENTION_DAYS are forgotten."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scoring.engine.handlers import process_batch
from services.scoring.engine.retention import DedupRetention
from services.scoring.kpi.measure import Measure
from shared.db import session_scope
from shared.events import Event, validate_event_obj
from shared.settings import load_settings

TZ = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


def ev(event_id: str, kind: str, at: str, **fields: Any) -> Event:
    return validate_event_obj({"event_id": event_id, "type": kind, "occurred_at": at, **fields})


async def _apply(sm: async_sessionmaker[AsyncSession], events: list[Event]) -> None:
    async with session_scope(sm) as session:
        await process_batch(session, events, measure=Measure(TZ))


async def _age(sm: async_sessionmaker[AsyncSession], days: float) -> None:
    async with session_scope(sm) as session:
        await session.execute(
            text("UPDATE processed_events SET first_seen_at = :at"),
            {"at": NOW - dt.timedelta(days=days)},
        )


async def _ids(sm: async_sessionmaker[AsyncSession]) -> set[str]:
    async with sm() as session:
        rows = await session.execute(text("SELECT event_id FROM processed_events"))
        return {r[0] for r in rows}


async def _daily(sm: async_sessionmaker[AsyncSession]) -> dict[tuple[str, str], tuple[float, int]]:
    async with sm() as session:
        rows = await session.execute(
            text("SELECT specialist_id, metric, sum(num), sum(den) FROM kpi_daily GROUP BY 1, 2")
        )
        return {(r[0], r[1]): (float(r[2]), int(r[3])) for r in rows}


def _retention(sm: async_sessionmaker[AsyncSession], days: int, chunk: int) -> DedupRetention:
    settings = load_settings(dedup_retention_days=days)
    return DedupRetention(settings, sm, clock=lambda: NOW, chunk=chunk)


async def test_purge_forgets_only_ids_older_than_the_horizon_in_chunks(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    old = [
        ev(f"old{i}", "record.audited", "2026-08-01T10:00:00Z", specialist_id="s", accurate=True)
        for i in range(25)
    ]
    await _apply(sessionmaker, old)
    await _age(sessionmaker, 91)
    fresh = [ev("new", "record.audited", "2026-11-28T10:00:00Z", specialist_id="s", accurate=True)]
    await _apply(sessionmaker, fresh)
    await _age_one(sessionmaker, "new", 89)

    assert await _retention(sessionmaker, 0, 10).purge() == 0  # 0 = remember forever
    assert len(await _ids(sessionmaker)) == 26
    retention = _retention(sessionmaker, 90, 10)  # 25 old ids: three chunks
    assert await retention.purge() == 25
    assert await _ids(sessionmaker) == {"new"}
    assert await retention.purge() == 0


async def _age_one(sm: async_sessionmaker[AsyncSession], event_id: str, days: float) -> None:
    async with session_scope(sm) as session:
        await session.execute(
            text("UPDATE processed_events SET first_seen_at = :at WHERE event_id = :id"),
            {"at": NOW - dt.timedelta(days=days), "id": event_id},
        )


async def test_after_the_horizon_ticket_events_stay_idempotent_and_others_count_again(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The documented trade-off of KPI_DEDUP_RETENTION_DAYS, shown end to end."""
    ticket = [
        ev("c1", "ticket.created", "2026-08-01T09:00:00+08:00", ticket_id="t", specialist_id="s"),
        ev("r1", "ticket.first_response", "2026-08-01T10:00:00+08:00", ticket_id="t",
           specialist_id="s"),
        ev("x1", "ticket.closed", "2026-08-01T12:00:00+08:00", ticket_id="t", specialist_id="s",
           resolved=True),
        ev("q1", "survey.csat", "2026-08-01T13:00:00+08:00", ticket_id="t", score=5),
        ev("a1", "record.audited", "2026-08-01T14:00:00+08:00", specialist_id="s",
           accurate=True),
    ]  # fmt: skip
    await _apply(sessionmaker, ticket)
    before = await _daily(sessionmaker)
    await _age(sessionmaker, 120)
    assert await _retention(sessionmaker, 90, 1000).purge() == len(ticket)

    await _apply(sessionmaker, ticket)  # the same events, redelivered after the horizon
    after = await _daily(sessionmaker)
    audit = ("s", "record_accuracy")
    assert {k: v for k, v in after.items() if k != audit} == {
        k: v for k, v in before.items() if k != audit
    }
    assert after[audit] == (2.0, 2)  # counted again: outside the horizon by definition
    assert before[audit] == (1.0, 1)
