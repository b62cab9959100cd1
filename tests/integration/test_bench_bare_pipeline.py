"""The bare-pipeline benchmark is the honest reference it claims: each event counted once."""

from __future__ import annotations

import sys
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import orjson

from shared.embedded import EmbeddedPostgres
from shared.topics import Topics

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import bench_bare_pipeline
import bench_scoring

TZ = "Asia/Shanghai"


async def test_bare_pipeline_counts_every_event_once_and_stores_offsets(
    pg_server: EmbeddedPostgres, bootstrap: str, created_topics: Topics
) -> None:
    messages = bench_scoring.make_events(2500, seed=5, tag="bare")
    await bench_scoring.produce(bootstrap, created_topics.events, messages)
    url = pg_server.create_database(f"bare_{uuid.uuid4().hex[:6]}")
    dsn = "postgresql://" + url.split("://", 1)[1]

    # Small batches: duplicates land both within one batch and in later batches.
    res = await bench_bare_pipeline.run(
        bootstrap, created_topics.events, dsn, len(messages), batch=300, tz=TZ
    )

    first: dict[str, dict[str, object]] = {}
    for _, value in messages:
        obj = orjson.loads(value)
        first.setdefault(str(obj["event_id"]), obj)
    assert res["events"] == len(messages)
    assert res["applied"] == len(first)
    assert res["duplicates"] == len(messages) - len(first) > 0
    expected: Counter[tuple[str, object, str]] = Counter()
    zone = ZoneInfo(TZ)
    for e in first.values():
        who = str(e.get("specialist_id") or e.get("ticket_id") or e["event_id"])
        day = datetime.fromisoformat(str(e["occurred_at"])).astimezone(zone).date()
        expected[(who, day, str(e["type"]))] += 1
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT specialist_id, day, metric, den FROM bare_daily")
        claimed = await conn.fetchval("SELECT count(*) FROM bare_processed_events")
        offsets = await conn.fetchval("SELECT sum(next_offset) FROM bare_offsets")
    finally:
        await conn.close()
    assert {(r[0], r[1], r[2]): r[3] for r in rows} == dict(expected)
    assert claimed == len(first)
    # Offsets stored in the same transaction cover every message of the topic.
    assert offsets == len(messages)
