"""Upgrading to the SPEC §3a measures: tickets stored by the previous release are backfilled
exactly once, next to the live engine and a second replica, and equal the reference."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from chaos.generator import HistoryMaker, deliveries
from services.scoring.engine.backfill import MEASURES_BACKFILL, MeasuresBackfill
from services.scoring.engine.handlers import process_batch
from services.scoring.kpi.contributions import HoursFn
from services.scoring.kpi.measure import Measure
from shared.catalogue import MEASURE_KEYS
from shared.db import create_sessionmaker, session_scope
from shared.events import Event
from tests.integration.test_rescore import (
    CN,
    SH,
    aggregates,
    assert_same,
    from_scratch,
    raw_tables,
)
from tests.integration.test_scoring_engine import assert_sums_equal, reset
from tests.reference import reference_sums


async def apply(engine: AsyncEngine, events: list[Event], measure: Measure) -> None:
    async with session_scope(create_sessionmaker(engine)) as session:
        await process_batch(session, events, measure=measure)


async def as_previous_release(engine: AsyncEngine) -> None:
    """Leave what the release before the §3a measures stored: the same documents without the
    mark (nor the values only this release keeps), no measure aggregates, no such issue."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE ticket_states SET state = (state::jsonb - 'm' - 'sl' - 'xh')::json "
                "WHERE state::jsonb <> '{}'::jsonb"
            )
        )
        # The channel breakdown and the time buckets mirror kpi_daily (migration 0017).
        for table in ("kpi_daily", "kpi_facts", "kpi_channel_daily", "kpi_time_buckets"):
            await conn.execute(
                text(f"DELETE FROM {table} WHERE metric = ANY(:m)"), {"m": list(MEASURE_KEYS)}
            )
        await conn.execute(
            text("DELETE FROM data_quality_issues WHERE issue = 'negative_resolution_time'")
        )
        await conn.execute(text("DELETE FROM scoring_backfills"))


async def unmarked(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        got = await conn.execute(
            text("SELECT count(*) FROM ticket_states WHERE (state->>'m') IS NULL")
        )
        return int(got.scalar_one())


async def progress(engine: AsyncEngine) -> tuple[Any, ...]:
    async with engine.connect() as conn:
        got = await conn.execute(
            text("SELECT tickets, done_at IS NOT NULL FROM scoring_backfills WHERE name = :n"),
            {"n": MEASURES_BACKFILL},
        )
        return tuple(got.one())


def backfill(engine: AsyncEngine, measure: Measure, batch: int) -> MeasuresBackfill:
    return MeasuresBackfill(create_sessionmaker(engine), measure, batch=batch)


@pytest.mark.parametrize(
    ("seed", "hours", "sla"), [(1, None, 24.0), (2, CN, 4.0), (3, None, 0.5), (4, CN, 24.0)]
)
async def test_backfill_of_old_tickets_equals_processing_from_scratch(
    clean_db: AsyncEngine, seed: int, hours: HoursFn | None, sla: float
) -> None:
    engine = clean_db
    measure = Measure(SH, hours, sla_hours=sla)
    rng = random.Random(seed)
    events = HistoryMaker(rng, SH).history(tickets=25)
    delivered = deliveries(rng, events)
    cut = len(delivered) * 2 // 3
    want = await from_scratch(engine, delivered, hours, sla)
    assert any(k[2] in MEASURE_KEYS for k in want["daily"])

    await reset(engine)
    for i in range(0, cut, 9):
        await apply(engine, delivered[i : min(i + 9, cut)], measure)
    await as_previous_release(engine)
    old = await unmarked(engine)
    assert old > 0

    # The upgraded engine meets old documents (their diffs must not subtract measures they
    # never added) while two replicas backfill in small batches next to it.
    async def live() -> None:
        rest = delivered[cut:]
        for i in range(0, len(rest), 4):
            await apply(engine, rest[i : i + 4], measure)
            await asyncio.sleep(0)

    first, second = backfill(engine, measure, 3), backfill(engine, measure, 5)
    await asyncio.gather(first.run_once(), second.run_once(), live())
    assert first.done and second.done
    assert await unmarked(engine) == 0
    got = await aggregates(engine)
    assert_same(got, want)
    assert_sums_equal(
        {k: v for k, v in got["daily"].items()},
        reference_sums(delivered, SH, hours, sla),
    )
    tickets, done = await progress(engine)
    assert done and 0 < tickets <= old

    # Twice: a finished backfill does nothing, and one forced to scan again changes nothing.
    stored = await raw_tables(engine)
    again = backfill(engine, measure, 4)
    await again.run_once()
    assert again.done and again.scanned == 0
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE scoring_backfills SET done_at = NULL, after_id = ''"))
    forced = backfill(engine, measure, 4)
    await forced.run_once()
    assert forced.changed == 0
    assert await raw_tables(engine) == stored


async def test_backfill_resumes_after_the_last_committed_batch(clean_db: AsyncEngine) -> None:
    engine = clean_db
    measure = Measure(SH)
    rng = random.Random(7)
    delivered = deliveries(rng, HistoryMaker(rng, SH).history(tickets=12))
    want = await from_scratch(engine, delivered, None)
    await as_previous_release(engine)
    job = backfill(engine, measure, 2)
    step = await job.step()  # one batch, then the process "stops"
    assert not step.done and step.scanned == 2
    assert (await progress(engine))[0] == 2
    resumed = backfill(engine, measure, 2)
    await resumed.run_once()
    assert resumed.scanned == (await progress(engine))[0] - 2
    assert_same(await aggregates(engine), want)


async def test_a_fresh_installation_finishes_at_once(clean_db: AsyncEngine) -> None:
    job = backfill(clean_db, Measure(SH), 10)
    await job.run_once()
    assert job.done and job.scanned == 0
    assert await progress(clean_db) == (0, True)
