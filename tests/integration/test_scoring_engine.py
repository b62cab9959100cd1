"""Scoring engine against real PostgreSQL: random histories, random order and duplicates."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from datetime import date, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from chaos.generator import HistoryMaker, deliveries, dst_anchors
from services.scoring import snapshots
from services.scoring.engine.handlers import Incoming, process_batch
from services.scoring.kpi.contributions import NEGATIVE_RESPONSE_TIME
from services.scoring.kpi.histogram import DISTRIBUTED
from services.scoring.kpi.measure import Measure
from services.scoring.kpi.windows import Window, parse_window
from shared.catalogue import KPI_KEYS
from shared.db import create_engine, create_sessionmaker, session_scope
from shared.events import Event
from tests.reference import (
    reference_channel_sums,
    reference_negative_response,
    reference_sums,
    reference_window,
)

TZ = ZoneInfo("America/New_York")
SPECIALISTS = ("s1", "s2", "s3", "s4")
ENGINE_TABLES = (
    "processed_events",
    "event_conflicts",
    "consumer_offsets",
    "ticket_states",
    "training_sessions",
    "kpi_daily",
    "kpi_facts",
    "kpi_channel_daily",
    "kpi_time_buckets",
    "data_quality_issues",
    "score_outbox",
)


# The one history generator, shared with the chaos harness (chaos/generator.py).
_anchors = dst_anchors


def chunks(
    rng: random.Random, items: list[Any], low: int = 1, high: int = 30
) -> Iterator[list[Any]]:
    i = 0
    while i < len(items):
        n = rng.randint(low, high)
        yield items[i : i + n]
        i += n


async def reset(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {', '.join(ENGINE_TABLES)}, specialists CASCADE"))


async def daily_rows(engine: AsyncEngine) -> dict[tuple[str, date, str], tuple[float, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT specialist_id, day, metric, num, den FROM kpi_daily")
        )
        return {(r[0], r[1], r[2]): (float(r[3]), int(r[4])) for r in rows}


async def channel_rows(engine: AsyncEngine) -> dict[tuple[str, date, str, str], tuple[float, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT specialist_id, day, metric, channel, num, den FROM kpi_channel_daily")
        )
        return {(r[0], r[1], r[2], r[3]): (float(r[4]), int(r[5])) for r in rows}


def _nonzero(sums: dict[Any, tuple[float, int]]) -> dict[Any, tuple[float, int]]:
    return {k: v for k, v in sums.items() if v[1] != 0 or abs(v[0]) > 1e-6}


def assert_sums_equal(
    got: dict[Any, tuple[float, int]], want: dict[Any, tuple[float, int]]
) -> None:
    got, want = _nonzero(got), _nonzero(want)
    assert got.keys() == want.keys(), (sorted(got.keys() ^ want.keys()))[:10]
    for key, (num, den) in want.items():
        assert got[key][1] == den, (key, got[key], (num, den))
        assert got[key][0] == pytest.approx(num, abs=1e-6), (key, got[key], (num, den))


async def check_against_reference(
    engine: AsyncEngine, delivered: list[Event], tz: tzinfo = TZ
) -> int:
    """Buckets, facts and every window of every specialist equal the reference; returns cells."""
    want = reference_sums(delivered, tz)
    assert_sums_equal(await daily_rows(engine), want)
    # Issue 17: the breakdown equals the reference grouped by ticket channel, and every
    # counted time value is in exactly one distribution bucket.
    assert_sums_equal(await channel_rows(engine), reference_channel_sums(delivered, tz))
    async with engine.connect() as conn:
        counts = await conn.execute(
            text(
                "SELECT specialist_id, day, metric, sum(count) FROM kpi_time_buckets "
                "GROUP BY 1, 2, 3"
            )
        )
        got_counts = {(r[0], r[1], r[2]): int(r[3]) for r in counts if r[3]}
    assert got_counts == {k: v[1] for k, v in want.items() if k[2] in DISTRIBUTED and v[1]}
    async with engine.connect() as conn:
        mismatched = await conn.execute(
            text(
                """
                SELECT d.specialist_id, d.day, d.metric, d.num, d.den, f.num, f.den FROM kpi_daily d
                LEFT JOIN (SELECT specialist_id, day, metric, sum(num) AS num, sum(den) AS den
                           FROM kpi_facts GROUP BY 1, 2, 3) f USING (specialist_id, day, metric)
                WHERE d.den <> coalesce(f.den, 0) OR abs(d.num - coalesce(f.num, 0)) > 1e-6
                """
            )
        )
        assert mismatched.all() == []
        zero_facts = await conn.execute(
            text("SELECT count(*) FROM kpi_facts WHERE den = 0 AND abs(num) < 1e-9")
        )
        assert zero_facts.scalar_one() == 0
    windows: list[Window] = []
    for anchor in _anchors(tz):
        for as_of in (anchor.date(), anchor.date() + timedelta(days=1)):
            windows += [parse_window(w, as_of) for w in ("7d", "30d", "qtd")]
    windows += [parse_window(f"2026Q{q}", date(2026, 1, 1)) for q in (1, 2, 3, 4)]
    cells = 0
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session:
        for window in windows:
            got = await snapshots.window_sums(session, SPECIALISTS, window)
            for who in SPECIALISTS:
                want_w = reference_window(delivered, tz, who, window)
                for metric, (num, den) in want_w.items():
                    g = got[who].get(metric, (0.0, 0))
                    assert g[1] == den, (who, window, metric, g, (num, den))
                    assert g[0] == pytest.approx(num, abs=1e-6), (who, window, metric, g, num)
                    cells += 1
            values = await snapshots.window_kpis(session, SPECIALISTS, window)
            assert set(values) == set(SPECIALISTS)
            assert all(set(v) == set(KPI_KEYS) for v in values.values())
    return cells


async def _run_example(database_url: str, seed_rng: random.Random) -> None:
    rng = random.Random(seed_rng.getrandbits(64))
    engine = create_engine(database_url, pool_size=2, application_name="kpi-prop")
    try:
        await reset(engine)
        events = HistoryMaker(rng).history(tickets=rng.randint(1, 8))
        delivered = deliveries(rng, events)
        use_offsets = rng.random() < 0.5
        sessionmaker = create_sessionmaker(engine)
        items = [
            Incoming(e, "prop", i % 2, i // 2) if use_offsets else Incoming(e)
            for i, e in enumerate(delivered)
        ]
        done: list[list[Incoming]] = []
        for batch in chunks(rng, items):
            async with session_scope(sessionmaker) as session:
                await process_batch(
                    session, batch, measure=Measure(TZ), group_id="prop" if use_offsets else None
                )
            done.append(batch)
            if use_offsets and rng.random() < 0.3:
                # Redelivery of an already committed batch: stale offsets, no effect at all.
                again = rng.choice(done)
                async with session_scope(sessionmaker) as session:
                    result = await process_batch(
                        session, again, measure=Measure(TZ), group_id="prop"
                    )
                assert result.stale == len(again) and result.applied == 0
        await check_against_reference(engine, delivered)
        async with engine.connect() as conn:
            issues = {
                r[0]
                for r in await conn.execute(
                    text("SELECT source FROM data_quality_issues WHERE issue = :i"),
                    {"i": NEGATIVE_RESPONSE_TIME},
                )
            }
        negatives = reference_negative_response(events)
        assert issues == negatives
    finally:
        await engine.dispose()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.randoms(use_true_random=False))
def test_engine_equals_reference_in_any_order(database_url: str, seed: random.Random) -> None:
    asyncio.run(_run_example(database_url, seed))
