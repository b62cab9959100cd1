"""Team history (GET /v1/teams/{id}/kpis/{kpi}/history) through the real app and database."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.scoring.api import schemas
from services.scoring.app import build_app
from services.scoring.kpi.grading import evaluate
from services.scoring.kpi.lines import DEFAULT_LINES
from services.scoring.kpi.windows import Window
from shared.auth import Role
from shared.catalogue import KPI_KEYS
from shared.kafka import ensure_topics
from shared.problems import MEDIA_TYPE
from shared.settings import load_settings
from shared.topics import Topics
from tests.integration.test_scoring_api import (
    ADMIN,
    NOW,
    TODAY,
    TZ,
    d,
    seed_daily,
    seed_directory,
    token,
)
from tests.service_helpers import ADMIN_TOKEN

Bucket = tuple[str, dt.date, str, float, int]


@pytest.fixture(scope="module")
async def app(database_url: str, bootstrap: str) -> AsyncIterator[FastAPI]:
    """One app for the module, as in test_scoring_api (Asia/Shanghai, a fixed clock)."""
    topics = Topics(f"t{uuid.uuid4().hex[:10]}.")
    await ensure_topics(bootstrap, 1, topics.all)
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


def reference(
    rows: list[Bucket], members: set[str], kpi: str, start: dt.date, end: dt.date
) -> list[dict[str, Any]]:
    """Pool per day from the members' own buckets, then value each day and each 7 days
    ending on it from the pooled sums (never a mean of the members' or the days' ratios)."""
    line = DEFAULT_LINES[kpi]

    def pooled(first: dt.date, last: dt.date) -> tuple[float, int]:
        chosen = [
            (n, k) for s, day, m, n, k in rows if s in members and m == kpi and first <= day <= last
        ]
        return sum(n for n, _ in chosen), sum(k for _, k in chosen)

    out = []
    day = start
    while day <= end:
        week = day - dt.timedelta(days=6)
        today_value = evaluate(kpi, *pooled(day, day), line, Window("1d", day, day, "days"))
        week_value = evaluate(kpi, *pooled(week, day), line, Window("7d", week, day, "days"))
        out.append(
            {
                "date": str(day),
                "value": today_value.value,
                "numerator": today_value.numerator,
                "denominator": today_value.denominator,
                "rolling_7d": {
                    "value": week_value.value,
                    "numerator": week_value.numerator,
                    "denominator": week_value.denominator,
                },
            }
        )
        day += dt.timedelta(days=1)
    return out


def assert_points_equal(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert [p["date"] for p in got] == [p["date"] for p in want]
    for g, w in zip(got, want, strict=True):
        for part_g, part_w in ((g, w), (g["rolling_7d"], w["rolling_7d"])):
            assert part_g["denominator"] == part_w["denominator"], (g, w)
            for name in ("value", "numerator"):
                assert (part_g[name] is None) == (part_w[name] is None), (g, w)
                if part_w[name] is not None:
                    assert math.isclose(part_g[name], part_w[name], rel_tol=1e-12, abs_tol=1e-9)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "loner"]),
            st.integers(0, 40),
            st.sampled_from(KPI_KEYS),
            st.integers(0, 30),
            st.integers(0, 30),
        ),
        max_size=60,
        unique_by=lambda r: (r[0], r[1], r[2]),
    ),
    kpi=st.sampled_from(KPI_KEYS),
    to_back=st.integers(0, 15),
    days=st.integers(1, 25),
)
async def test_team_series_matches_reference(
    client: AsyncClient,
    clean_db: AsyncEngine,
    rows: list[tuple[str, int, str, int, int]],
    kpi: str,
    to_back: int,
    days: int,
) -> None:
    async with clean_db.begin() as conn:
        await conn.execute(text("TRUNCATE kpi_daily, specialists, teams CASCADE"))
    await seed_directory(
        clean_db,
        [("north", "North", None), ("south", "South", None)],
        [("a", None, "north"), ("b", None, "north"), ("c", None, "south"), ("loner", None, None)],
    )
    # Ratios keep num <= den; response hours get a fractional part, as the engine stores them.
    buckets: list[Bucket] = [
        (s, d(back), m, float(min(n, k)) + (0.25 if m == "avg_response_time_hours" else 0.0), k)
        for s, back, m, n, k in rows
    ]
    await seed_daily(clean_db, buckets)
    end = d(to_back)
    start = end - dt.timedelta(days=days - 1)
    for team, members in (("north", {"a", "b"}), ("south", {"c"})):
        r = await client.get(
            f"/v1/teams/{team}/kpis/{kpi}/history?from={start}&to={end}", headers=ADMIN
        )
        assert r.status_code == 200, r.text
        body = r.json()
        schemas.TeamHistory.model_validate(body)
        assert (body["team_id"], body["kpi"], body["from"], body["to"]) == (
            team,
            kpi,
            str(start),
            str(end),
        )
        assert_points_equal(body["points"], reference(buckets, members, kpi, start, end))
    # The specialist's own series follows the same rule (one member).
    r = await client.get(
        f"/v1/specialists/a/kpis/{kpi}/history?from={start}&to={end}", headers=ADMIN
    )
    assert_points_equal(r.json()["points"], reference(buckets, {"a"}, kpi, start, end))


async def test_pooled_not_mean_of_means_and_rolling_reaches_before_from(
    client: AsyncClient, clean_db: AsyncEngine
) -> None:
    await seed_directory(
        clean_db, [("north", "North", None)], [("a", "A", "north"), ("b", "B", "north")]
    )
    await seed_daily(
        clean_db,
        [
            # Day 2: a 9/10 and b 0/1 -> pooled 9/11 (a mean of the two ratios would be 0.45).
            ("a", d(2), "customer_satisfaction", 9.0, 10),
            ("b", d(2), "customer_satisfaction", 0.0, 1),
            # Before `from`, inside the first point's 7 days.
            ("a", d(8), "customer_satisfaction", 1.0, 1),
            ("b", d(3), "nps", 3.0, 4),
            ("a", d(3), "training_sessions", 1.0, 1),
            ("b", d(4), "training_sessions", 2.0, 2),
        ],
    )
    url = f"/v1/teams/north/kpis/customer_satisfaction/history?from={d(2)}&to={d(0)}"
    body = (await client.get(url, headers=ADMIN)).json()
    assert body["name"] == "North"
    first = body["points"][0]
    assert (first["numerator"], first["denominator"]) == (9, 11)
    assert math.isclose(first["value"], 9 / 11)
    # 7 days ending d(2) reach back to d(8): (9 + 0 + 1) / (10 + 1 + 1).
    assert first["rolling_7d"]["numerator"] == 10 and first["rolling_7d"]["denominator"] == 12
    assert math.isclose(first["rolling_7d"]["value"], 10 / 12)
    # nps: x100 on the pooled sums; training: counts, no denominator, no grade on days.
    nps = (
        await client.get(f"/v1/teams/north/kpis/nps/history?from={d(3)}&to={d(3)}", headers=ADMIN)
    ).json()
    assert nps["points"][0]["value"] == 75.0 and nps["points"][0]["rolling_7d"]["value"] == 75.0
    training = (
        await client.get(f"/v1/teams/north/kpis/training_sessions/history?to={d(0)}", headers=ADMIN)
    ).json()
    assert len(training["points"]) == 30 and training["to"] == str(TODAY)
    last = training["points"][-1]
    assert last["numerator"] == 0 and last["denominator"] is None
    assert last["rolling_7d"] == {"value": 3, "numerator": 3, "denominator": None}


async def test_team_without_members_unknown_team_and_moved_member(
    client: AsyncClient, clean_db: AsyncEngine
) -> None:
    await seed_directory(
        clean_db,
        [("north", "North", None), ("empty", "Empty", None), ("south", "South", None)],
        [("a", None, "north"), ("b", None, "north")],
    )
    await seed_daily(
        clean_db, [("a", d(1), "resolution_rate", 3.0, 4), ("b", d(1), "resolution_rate", 1.0, 1)]
    )
    url = "/v1/teams/{}/kpis/resolution_rate/history?from=" + str(d(1)) + "&to=" + str(d(1))
    empty = (await client.get(url.format("empty"), headers=ADMIN)).json()
    assert empty["points"] == [
        {
            "date": str(d(1)),
            "value": None,
            "numerator": 0,
            "denominator": 0,
            "rolling_7d": {"value": None, "numerator": 0, "denominator": 0},
        }
    ]
    unknown = await client.get(url.format("nowhere"), headers=ADMIN)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith(MEDIA_TYPE)
    assert unknown.json()["detail"] == "unknown team 'nowhere'"

    def pooled(body: dict[str, Any]) -> tuple[Any, Any]:
        return body["points"][0]["numerator"], body["points"][0]["denominator"]

    assert pooled((await client.get(url.format("north"), headers=ADMIN)).json()) == (4, 5)
    # Members are the current ones: b moves to south and takes its buckets along.
    r = await client.put("/v1/specialists/b", json={"team_id": "south"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert pooled((await client.get(url.format("north"), headers=ADMIN)).json()) == (3, 4)
    assert pooled((await client.get(url.format("south"), headers=ADMIN)).json()) == (1, 1)


async def test_team_history_roles(
    client: AsyncClient, clean_db: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await seed_directory(
        clean_db,
        [("north", "North", "ann"), ("south", "South", "bob")],
        [("a", None, "north")],
    )
    path = "/v1/teams/{}/kpis/nps/history"
    ann = await token(sessionmaker, Role.SUPERVISOR, "ann", ["north"])
    spec = await token(sessionmaker, Role.SPECIALIST, "a")
    service = await token(sessionmaker, Role.SERVICE, "zendesk")
    assert (await client.get(path.format("north"), headers=ann)).status_code == 200
    assert (await client.get(path.format("north"), headers=ADMIN)).status_code == 200
    other = await client.get(path.format("south"), headers=ann)
    unknown = await client.get(path.format("nowhere"), headers=ann)
    assert other.status_code == unknown.status_code == 404
    assert other.json()["detail"] == "unknown team 'south'"
    assert unknown.json()["detail"] == "unknown team 'nowhere'"
    for headers in (spec, service):
        assert (await client.get(path.format("north"), headers=headers)).status_code == 403
    assert (await client.get(path.format("north"))).status_code == 401


async def test_odd_ids_and_parameters_are_named(client: AsyncClient, clean_db: AsyncEngine) -> None:
    cjk = "华东一组"
    await seed_directory(clean_db, [(cjk, "华东", None)], [("s1", "李娜", cjk)])
    await seed_daily(clean_db, [("s1", d(0), "followup_rate", 1.0, 2)])
    r = await client.get(f"/v1/teams/{quote(cjk)}/kpis/followup_rate/history", headers=ADMIN)
    assert r.status_code == 200 and r.json()["team_id"] == cjk
    assert r.json()["points"][-1]["value"] == 0.5
    base = "/v1/teams/{}/kpis/{}/history{}"
    cases = [
        (base.format("a%00b", "nps", ""), ["path", "team_id"], "invalid_text"),
        (base.format("x" * 129, "nps", ""), ["path", "team_id"], "string_too_long"),
        (base.format("north", "speed", ""), ["path", "kpi"], None),
        (base.format("north", "nps", f"?from={d(0)}&to={d(1)}"), ["query", "from"], None),
        (base.format("north", "nps", f"?from={d(400)}&to={d(0)}"), ["query", "from"], None),
        (base.format("north", "nps", "?to=0001-01-02"), ["query", "to"], None),
        (base.format("north", "nps", "?to=yesterday"), ["query", "to"], None),
    ]
    for url, loc, kind in cases:
        r = await client.get(url, headers=ADMIN)
        assert r.status_code == 422, (url, r.text)
        assert r.headers["content-type"].startswith(MEDIA_TYPE)
        errors = r.json()["errors"]
        assert any(e["loc"] == loc for e in errors), (url, errors)
        assert errors[0]["field"] == loc[-1], (url, errors)
        if kind is not None:
            assert errors[0]["type"] == kind, (url, errors)
    full = await client.get(base.format(quote(cjk), "nps", f"?from={d(399)}"), headers=ADMIN)
    assert full.status_code == 200 and len(full.json()["points"]) == 400
