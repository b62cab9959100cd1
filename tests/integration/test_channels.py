"""Issue 17 end to end: events through the broker and the real engine into the channel
breakdown and time distributions, read back by the API; the upgrade's redelivery rules."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring.api import schemas
from services.scoring.app import build_app
from services.scoring.engine.handlers import process_batch
from services.scoring.kpi.histogram import RELATIVE_ERROR, bucket_of
from services.scoring.kpi.measure import Measure
from shared.db import create_sessionmaker, session_scope
from shared.events import encode_event, partition_key, validate_event_obj
from shared.kafka import ensure_topics
from shared.settings import load_settings
from shared.topics import Topics
from tests.integration.test_scoring_api import seed_directory
from tests.kafka_helpers import produce, wait_for
from tests.service_helpers import ADMIN_TOKEN

TZ = "Asia/Shanghai"
NOW = dt.datetime(2026, 5, 31, 17, 30, tzinfo=dt.UTC)
TODAY = dt.date(2026, 6, 1)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LONG = "長" * 128  # the longest channel an event may name; stored cut to 64


@pytest.fixture(scope="module")
async def topics(bootstrap: str) -> Topics:
    created = Topics(f"t{uuid.uuid4().hex[:10]}.")
    await ensure_topics(bootstrap, 2, created.all)
    return created


@pytest.fixture(scope="module")
async def app(database_url: str, bootstrap: str, topics: Topics) -> AsyncIterator[FastAPI]:
    cfg = load_settings(
        database_url=database_url,
        kafka_bootstrap=bootstrap,
        bootstrap_admin_token=ADMIN_TOKEN,
        timezone=TZ,
        topic_prefix=topics.prefix,
        scoring_session_timeout_ms=1000,
    )
    application = build_app(cfg)
    async with application.router.lifespan_context(application):
        application.state.clock = lambda: NOW
        yield application


@pytest.fixture
async def client(app: FastAPI, clean_db: AsyncEngine) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://scoring") as c:
        yield c


def ev(event_id: str, kind: str, at: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": kind, "occurred_at": at, **fields}


def ticket(
    tid: str, who: str, channel: str | None, hours: float, **extra: Any
) -> list[dict[str, Any]]:
    created_at = dt.datetime(2026, 5, 30, 9, 0, tzinfo=dt.UTC)
    answered = created_at + dt.timedelta(hours=hours)
    fields = {} if channel is None else {"channel": channel}
    return [
        ev(f"{tid}-c", "ticket.created", created_at.isoformat(), ticket_id=tid, specialist_id=who,
           **fields),
        ev(f"{tid}-r", "ticket.first_response", answered.isoformat(), ticket_id=tid,
           specialist_id=who),
        ev(f"{tid}-x", "ticket.closed", answered.isoformat(), ticket_id=tid, specialist_id=who,
           resolved=extra.get("resolved", True)),
    ]  # fmt: skip


async def send(bootstrap: str, topics: Topics, raw: list[dict[str, Any]]) -> None:
    events = [validate_event_obj(r) for r in raw]
    values = [encode_event(e) for e in events]
    keys = {encode_event(e): partition_key(e) for e in events}
    await produce(bootstrap, topics.events, values, key=lambda v: keys[v])


async def count_processed(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM processed_events"))).scalar_one())


async def test_breakdown_and_distribution_through_broker_engine_and_api(
    client: AsyncClient, clean_db: AsyncEngine, bootstrap: str, topics: Topics
) -> None:
    await seed_directory(
        clean_db, [("north", "North", "sup")], [("ann", "Ann", "north"), ("bob", "Bob", "north")]
    )
    hours = [0.5, 1.0, 2.0, 3.0, 8.0, 30.0]
    raw: list[dict[str, Any]] = []
    raw += ticket("W1", "ann", "web", hours[0])
    raw += ticket("W2", "ann", " web ", hours[1], resolved=False)
    raw += ticket("P1", "ann", "电话", hours[2])
    raw += ticket("E1", "bob", "📧 email", hours[3])
    raw += ticket("L1", "bob", LONG, hours[4])
    raw += ticket("U1", "bob", "", hours[5])  # empty: unknown
    surveys = [
        ev("s1", "survey.csat", "2026-05-31T01:00:00Z", ticket_id="W1", specialist_id="bob",
           score=5),
        ev("s2", "survey.csat", "2026-05-31T01:00:00Z", ticket_id="P1", score=2),
        ev("s3", "survey.csat", "2026-05-31T01:00:00Z", specialist_id="ann", score=4),
    ]  # fmt: skip
    await send(bootstrap, topics, raw + surveys)
    total = len(raw) + len(surveys)
    await wait_for(lambda: _processed_at_least(clean_db, total), timeout=60)

    r = await client.get("/v1/specialists/ann/kpis?window=7d&by=channel", headers=ADMIN)
    assert r.status_code == 200, r.text
    body = r.json()
    schemas.SpecialistKpis.model_validate(body)
    by = body["by_channel"]
    assert set(by) == {"web", "电话", "unknown"} and body["other_channels"] is None
    assert by["web"]["resolution_rate"]["numerator"] == 1
    assert by["web"]["resolution_rate"]["denominator"] == 2
    assert by["web"]["avg_response_time_hours"]["numerator"] == pytest.approx(1.5)
    assert by["电话"]["customer_satisfaction"]["denominator"] == 1  # s2, rated ann via ticket
    assert by["unknown"]["customer_satisfaction"]["numerator"] == 1  # s3, no ticket
    # Per channel the cells add up to the overall cells.
    for key in ("customer_satisfaction", "resolution_rate", "avg_response_time_hours"):
        overall = body["kpis"][key]
        assert sum(c[key]["denominator"] for c in by.values()) == overall["denominator"]
        assert math.isclose(sum(c[key]["numerator"] for c in by.values()), overall["numerator"])
    assert "by_channel" not in (await client.get("/v1/specialists/ann/kpis", headers=ADMIN)).json()

    team = (await client.get("/v1/teams/north/kpis?window=7d&by=channel", headers=ADMIN)).json()
    schemas.TeamKpis.model_validate(team)
    assert set(team["by_channel"]) == {"web", "电话", "📧 email", LONG[:64], "unknown"}
    # bob's direct survey of W1 takes W1's channel.
    assert team["by_channel"]["web"]["customer_satisfaction"]["numerator"] == 1

    dist = (
        await client.get(
            "/v1/teams/north/kpis/avg_response_time_hours/distribution?window=7d", headers=ADMIN
        )
    ).json()
    schemas.TeamDistribution.model_validate(dist)
    assert dist["count"] == len(hours) and sum(b["count"] for b in dist["histogram"]) == len(hours)
    assert dist["mean"] == pytest.approx(sum(hours) / len(hours))
    ordered = sorted(hours)
    for name, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        exact = ordered[max(1, math.ceil(round(p * len(hours), 9))) - 1]
        assert abs(dist[name] - exact) <= RELATIVE_ERROR * exact * (1 + 1e-12), (name, dist)
    assert dist["relative_error"] == pytest.approx(RELATIVE_ERROR)
    own = (
        await client.get(
            "/v1/specialists/ann/kpis/avg_response_time_hours/distribution?window=7d",
            headers=ADMIN,
        )
    ).json()
    assert own["count"] == 3 and own["specialist_id"] == "ann"
    assert [b["count"] for b in own["histogram"]] == [1, 1, 1]
    assert own["histogram"][0]["lower"] <= 0.5 < own["histogram"][0]["upper"]

    # Other KPIs have no distribution: a problem naming the path parameter.
    for kpi in ("customer_satisfaction", "no_such_kpi"):
        bad = await client.get(f"/v1/specialists/ann/kpis/{kpi}/distribution", headers=ADMIN)
        assert bad.status_code == 422 and bad.headers["content-type"].startswith(
            "application/problem+json"
        )
        assert bad.json()["errors"][0]["field"] == "kpi"
    bad = await client.get("/v1/teams/north/kpis?by=team", headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "by"

    # A late, earlier ticket.created naming another channel moves W1 (and bob's survey).
    await send(
        bootstrap,
        topics,
        [ev("W1-c0", "ticket.created", "2026-05-30T08:00:00Z", ticket_id="W1", channel="chat")],
    )
    await wait_for(lambda: _processed_at_least(clean_db, total + 1), timeout=60)
    team = (await client.get("/v1/teams/north/kpis?window=7d&by=channel", headers=ADMIN)).json()
    assert team["by_channel"]["chat"]["customer_satisfaction"]["numerator"] == 1
    assert team["by_channel"]["chat"]["resolution_rate"]["denominator"] == 1
    assert team["by_channel"]["web"]["resolution_rate"]["denominator"] == 1
    assert "customer_satisfaction" in team["by_channel"]["web"]
    assert team["by_channel"]["web"]["customer_satisfaction"]["denominator"] == 0
    # The response time of W1 grew by an hour: its bucket moved, the count did not.
    dist2 = (
        await client.get(
            "/v1/teams/north/kpis/avg_response_time_hours/distribution?window=7d", headers=ADMIN
        )
    ).json()
    assert dist2["count"] == len(hours)
    assert dist2["mean"] == pytest.approx((sum(hours) + 1) / len(hours))
    async with clean_db.connect() as conn:
        rows = await conn.execute(
            text("SELECT bucket, count FROM kpi_time_buckets WHERE specialist_id = 'ann'")
        )
        got = {int(r[0]): int(r[1]) for r in rows if r[1]}
    assert got == {bucket_of(1.5): 1, bucket_of(1.0): 1, bucket_of(2.0): 1}


async def _processed_at_least(engine: AsyncEngine, n: int) -> bool:
    return await count_processed(engine) >= n


SH = dt.timezone(dt.timedelta(hours=8))


async def test_survey_counted_before_the_upgrade_is_not_counted_again(
    clean_db: AsyncEngine,
) -> None:
    """A survey naming a ticket and a specialist was counted as ``event:<id>`` before issue
    17. Redelivered after the upgrade, the dedup table recognises it (within the replay
    horizon), and after that its own fact does: nothing moves, and its fact stays explained
    by ``event:<id>``."""
    sm = create_sessionmaker(clean_db)
    measure = Measure(dt.UTC)
    survey = validate_event_obj(
        ev("old-s", "survey.csat", "2026-05-01T10:00:00Z", ticket_id="T", specialist_id="ann",
           score=5)
    )  # fmt: skip
    created = validate_event_obj(
        ev("old-c", "ticket.created", "2026-05-01T09:00:00Z", ticket_id="T", specialist_id="ann")
    )
    async with session_scope(sm) as session:
        await process_batch(session, [created], measure=measure)
    # What the previous release left: the id claimed, the survey as its own fact, a v2
    # ticket document (without the survey), and migration 0017's "unknown" copy.
    day = dt.date(2026, 5, 1)
    async with clean_db.begin() as conn:
        await conn.execute(
            text("INSERT INTO processed_events (event_id, payload_hash) VALUES ('old-s', :h)"),
            {"h": "0" * 64},
        )
        await conn.execute(
            text(
                "INSERT INTO kpi_daily (specialist_id, day, metric, num, den) "
                "VALUES ('ann', :d, 'customer_satisfaction', 1, 1)"
            ),
            {"d": day},
        )
        await conn.execute(
            text(
                "INSERT INTO kpi_facts (specialist_id, day, metric, source, num, den) "
                "VALUES ('ann', :d, 'customer_satisfaction', 'event:old-s', 1, 1)"
            ),
            {"d": day},
        )
        await conn.execute(
            text(
                "INSERT INTO kpi_channel_daily (specialist_id, day, metric, channel, num, den) "
                "VALUES ('ann', :d, 'customer_satisfaction', 'unknown', 1, 1)"
            ),
            {"d": day},
        )
        doc = (
            await conn.execute(text("SELECT state::text FROM ticket_states WHERE ticket_id='T'"))
        ).scalar_one()
        await conn.execute(
            text("UPDATE ticket_states SET state = CAST(:s AS json) WHERE ticket_id = 'T'"),
            {"s": orjson.dumps({**orjson.loads(doc), "v": 2}).decode()},
        )

    async def tables() -> list[Any]:
        async with clean_db.connect() as conn:
            return [
                sorted(tuple(r) for r in await conn.execute(text(q)))
                for q in (
                    "SELECT specialist_id, day, metric, num, den FROM kpi_daily",
                    "SELECT specialist_id, day, metric, source, num, den FROM kpi_facts",
                    "SELECT specialist_id, day, metric, channel, num, den FROM kpi_channel_daily",
                )
            ]

    before = await tables()
    async with session_scope(sm) as session:
        result = await process_batch(session, [survey], measure=measure)
    assert (result.applied, result.duplicates) == (0, 1)
    assert await tables() == before
    # A new event of the ticket does not pull the old survey in either (the state never
    # held it): still counted once, under event:old-s, in channel unknown.
    later = validate_event_obj(
        ev("new-c", "ticket.created", "2026-04-30T09:00:00Z", ticket_id="T", channel="web")
    )
    async with session_scope(sm) as session:
        await process_batch(session, [later], measure=measure)
    assert await tables() == before

    # Beyond the replay horizon the dedup table has forgotten the id: the survey's own fact
    # (event:old-s) still says it was counted, so it is not counted again.
    async with clean_db.begin() as conn:
        await conn.execute(text("DELETE FROM processed_events WHERE event_id = 'old-s'"))
    async with session_scope(sm) as session:
        result = await process_batch(session, [survey], measure=measure)
    assert result.applied == 1 and await tables() == before

    # A late survey that was never counted before counts once, in the ticket (channel web).
    fresh = validate_event_obj(
        ev("new-s", "survey.csat", "2026-05-01T11:00:00Z", ticket_id="T", specialist_id="ann",
           score=1)
    )  # fmt: skip
    for _ in range(2):
        async with session_scope(sm) as session:
            await process_batch(session, [fresh], measure=measure)
    daily, facts, channels = await tables()
    assert ("ann", day, "customer_satisfaction", 1.0, 2) in daily
    assert ("ann", day, "customer_satisfaction", "ticket:T", 0.0, 1) in facts
    assert ("ann", day, "customer_satisfaction", "web", 0.0, 1) in channels
    assert ("ann", day, "customer_satisfaction", "unknown", 1.0, 1) in channels
