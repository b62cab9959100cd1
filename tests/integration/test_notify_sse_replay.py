"""Alert SSE stream resume: Last-Event-ID replay across a notify restart, bounds and resets."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notify.sse import REPLAY_MAX_EVENTS
from shared.auth import Role, issue_token
from shared.db import create_sessionmaker, session_scope
from tests.integration.notify_support import ProduceSnaps, Start, snapshot
from tests.integration.sse_support import Block, Stream
from tests.kafka_helpers import wait_for
from tests.service_helpers import ADMIN_TOKEN, start_service, wait_status

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def _rows_after(engine: AsyncEngine, after: int) -> list[tuple[int, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, data FROM alert_events WHERE id > :a ORDER BY id"), {"a": after}
        )
        return [(r[0], r[1]) for r in rows]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _assert_monotonic(blocks: list[Block]) -> None:
    ids = [b.id for b in blocks if b.id is not None]
    assert ids == sorted(ids) and len(ids) == len(set(ids)), ids


async def test_reconnect_with_last_event_id_gets_exactly_the_missed_events_across_restart(
    clean_db: AsyncEngine,
    notify_env: dict[str, str],
    start_notify: Start,
    produce_snaps: ProduceSnaps,
) -> None:
    svc = start_notify(notify_env)
    url = svc.url + "/v1/alerts/stream"
    first = Stream(url, ADMIN).open()
    await wait_for(lambda: first.blocks, 10)  # the cursor block: the stream is subscribed
    await produce_snaps([snapshot("a1", _now()), snapshot("a2", _now())])
    await wait_for(lambda: {b.data["specialist_id"] for b in first.alerts} == {"a1", "a2"}, 30)
    await first.close()
    _assert_monotonic(first.blocks)
    seen = first.last_id
    assert [b.id for b in first.alerts] == [r[0] for r in await _rows_after(clean_db, 0)]

    # Missed while disconnected: one fires, one resolves; then notify restarts.
    await produce_snaps([snapshot("a3", _now()), snapshot("a1", _now(), csat=0.97)])
    await wait_for(lambda: _count_is(clean_db, seen, 2), 30)
    svc.stop()
    svc = start_notify(notify_env)
    url = svc.url + "/v1/alerts/stream"
    missed = await _rows_after(clean_db, seen)
    assert sorted((d["specialist_id"], d["transition"]) for _, d in missed) == [
        ("a1", "resolved"),
        ("a3", "firing"),
    ]

    # Header and query parameter resume the same way.
    by_header = Stream(url, {**ADMIN, "Last-Event-ID": str(seen)}).open()
    by_query = Stream(url, ADMIN, {"lastEventId": str(seen)}).open()
    for stream in (by_header, by_query):
        await wait_for(lambda s=stream: len(s.alerts) >= 2, 10)
    # Then live: a new transition arrives once, after the replayed ones.
    await produce_snaps([snapshot("a4", _now())])
    for stream in (by_header, by_query):
        await wait_for(lambda s=stream: len(s.alerts) >= 3, 30)
    await asyncio.sleep(1.5)  # room for a duplicate to show up
    everything = await _rows_after(clean_db, seen)
    assert len(everything) == 3
    for stream in (by_header, by_query):
        await stream.close()
        assert stream.status == 200
        assert [(b.id, b.data) for b in stream.alerts] == everything
        assert [b.data["specialist_id"] for b in stream.alerts][-1] == "a4"
        assert not [b for b in stream.blocks if b.event == "reset"]
        _assert_monotonic(stream.blocks)
    assert first.last_id < everything[0][0]


async def _count_is(engine: AsyncEngine, after: int, n: int) -> bool:
    return len(await _rows_after(engine, after)) >= n


async def test_resume_bounds_reset_and_team_scoping(
    clean_db: AsyncEngine, notify_env: dict[str, str], start_notify: Start
) -> None:
    sm = create_sessionmaker(clean_db)
    async with session_scope(sm) as s:
        await s.execute(
            text("INSERT INTO teams (id, name, supervisor) VALUES ('north', 'North', 'ann')")
        )
        ann, _ = await issue_token(s, Role.SUPERVISOR, "ann")
        # More transitions than the replay bound, all but three of another team.
        await s.execute(
            text(
                """
                INSERT INTO alert_events (alert_id, specialist_id, kpi, team_id, transition,
                                          status, at, data)
                SELECT 'al' || g, 'sp' || g, 'nps', CASE WHEN g % 500 = 0 THEN 'north'
                       ELSE 'south' END, 'firing', 'firing', now(),
                       jsonb_build_object('alert_id', 'al' || g, 'team_id',
                           CASE WHEN g % 500 = 0 THEN 'north' ELSE 'south' END)
                FROM generate_series(1, :n) AS g
                """
            ),
            {"n": REPLAY_MAX_EVENTS + 500},
        )
    async with clean_db.connect() as conn:
        lo, hi = (await conn.execute(text("SELECT min(id), max(id) FROM alert_events"))).one()
    svc = start_notify(notify_env)
    url = svc.url + "/v1/alerts/stream"
    ann_h = {"Authorization": f"Bearer {ann}"}
    cases: list[tuple[dict[str, str], dict[str, str], str | None]] = [
        (ADMIN, {"Last-Event-ID": str(lo - 1)}, "too_old"),  # 1500 missed > bound
        (ADMIN, {"Last-Event-ID": str(hi + 10)}, "unknown_id"),  # never issued here
        (ADMIN, {"Last-Event-ID": "abc"}, "invalid_id"),
        (ADMIN, {"Last-Event-ID": str(hi - 5)}, None),  # five missed
        (ann_h, {"Last-Event-ID": str(lo - 1)}, None),  # only north's three count
        (ADMIN, {}, None),  # a first connection: no replay, just the cursor
    ]
    for auth, extra, reset in cases:
        stream = Stream(url, {**auth, **extra}).open()
        await wait_for(lambda s=stream: s.blocks and s.blocks[-1].id == hi, 10)
        await stream.close()
        _assert_monotonic(stream.blocks)
        resets = [b for b in stream.blocks if b.event == "reset"]
        if reset is not None:
            assert len(resets) == 1 and resets[0].data["reason"] == reset
            assert resets[0].id == hi and not stream.alerts
            assert resets[0].data["max_replay"] == REPLAY_MAX_EVENTS
            continue
        assert not resets
        replayed = [b.data["alert_id"] for b in stream.alerts]
        if auth is ann_h:
            assert replayed == ["al500", "al1000", "al1500"]
        elif extra:
            assert replayed == [f"al{g}" for g in range(1496, 1501)]
        else:
            assert replayed == [] and [b.id for b in stream.blocks] == [hi]


async def test_dashboard_proxy_resumes_with_last_event_id_and_survives_quiet_periods(
    clean_db: AsyncEngine,
    notify_env: dict[str, str],
    start_notify: Start,
    produce_snaps: ProduceSnaps,
    tmp_path: Path,
) -> None:
    """The dashboard reads the stream through scoring's proxy: its Last-Event-ID reaches
    notify, and a quiet stream is not cut by the proxy's request timeout (10 s)."""
    notify = start_notify(notify_env)
    await produce_snaps([snapshot("p1", _now()), snapshot("p2", _now())])
    await wait_for(lambda: _count_is(clean_db, 0, 2), 30)
    (first_id, _), (second_id, second) = await _rows_after(clean_db, 0)
    scoring = start_service("scoring", {**notify_env, "KPI_NOTIFY_URL": notify.url}, tmp_path)
    try:
        wait_status(scoring.url + "/readyz", 200, timeout=40)
        url = scoring.url + "/v1/dashboard/notify/alerts/stream"
        stream = Stream(url, {**ADMIN, "Last-Event-ID": str(first_id)}).open()
        await wait_for(lambda: len(stream.alerts) >= 1, 15)
        assert [(b.id, b.data) for b in stream.alerts] == [(second_id, second)]
        # Longer than the proxy's timeout for ordinary requests, shorter than notify's
        # keep-alive: the old proxy ended the stream here.
        await asyncio.sleep(12)
        assert stream.task is not None and not stream.task.done()
        await produce_snaps([snapshot("p3", _now())])
        await wait_for(lambda: len(stream.alerts) >= 2, 30)
        await stream.close()
        assert stream.status == 200
        assert [b.data["specialist_id"] for b in stream.alerts] == ["p2", "p3"]
        _assert_monotonic(stream.blocks)
    finally:
        scoring.stop()
