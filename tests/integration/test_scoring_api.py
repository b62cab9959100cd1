"""Scoring REST API against the real app, real migrations and rows seeded with plain SQL."""

from __future__ import annotations

import datetime as dt
import io
import math
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.scoring.api import schemas
from services.scoring.app import build_app
from services.scoring.kpi.grading import evaluate, evaluate_all
from services.scoring.kpi.lines import DEFAULT_LINES
from services.scoring.kpi.windows import parse_window
from shared.auth import Role, issue_token
from shared.catalogue import CATALOGUE, KPI_KEYS
from shared.db import session_scope
from shared.kafka import ensure_topics
from shared.settings import load_settings
from shared.topics import Topics
from tests.service_helpers import ADMIN_TOKEN, service_env, start_service, wait_status

TZ = "Asia/Shanghai"
# 2026-05-31 17:30 UTC is already 2026-06-01 in Shanghai: "today" must follow KPI_TIMEZONE.
NOW = dt.datetime(2026, 5, 31, 17, 30, tzinfo=dt.UTC)
TODAY = dt.date(2026, 6, 1)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
KPI_FIELDS = {"value", "numerator", "denominator", "grade", "qualified", "excellent", "min_samples"}

Row = tuple[str, dt.date, str, float, int]


async def seed_directory(
    engine: AsyncEngine,
    teams: Iterable[tuple[str, str, str | None]] = (),
    specialists: Iterable[tuple[str, str | None, str | None]] = (),
) -> None:
    async with engine.begin() as conn:
        for team_id, team_name, supervisor in teams:
            await conn.execute(
                text("INSERT INTO teams (id, name, supervisor) VALUES (:i, :n, :s)"),
                {"i": team_id, "n": team_name, "s": supervisor},
            )
        for sid, name, member_of in specialists:
            await conn.execute(
                text("INSERT INTO specialists (id, name, team_id) VALUES (:i, :n, :t)"),
                {"i": sid, "n": name, "t": member_of},
            )


async def seed_daily(engine: AsyncEngine, rows: Iterable[Row]) -> None:
    rows = list(rows)
    if not rows:
        return
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO kpi_daily (specialist_id, day, metric, num, den) "
                "VALUES (:s, :d, :m, :n, :k)"
            ),
            [{"s": s, "d": d, "m": m, "n": n, "k": k} for s, d, m, n, k in rows],
        )


async def seed_facts(
    engine: AsyncEngine, rows: Iterable[tuple[str, dt.date, str, str, float, int]]
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO kpi_facts (specialist_id, day, metric, source, num, den) "
                "VALUES (:s, :d, :m, :src, :n, :k)"
            ),
            [{"s": s, "d": d, "m": m, "src": src, "n": n, "k": k} for s, d, m, src, n, k in rows],
        )


async def token(
    sessionmaker: async_sessionmaker[AsyncSession],
    role: Role,
    subject: str,
    teams: Iterable[str] = (),
) -> dict[str, str]:
    async with session_scope(sessionmaker) as session:
        clear, _ = await issue_token(session, role, subject, teams)
    return {"Authorization": f"Bearer {clear}"}


@pytest.fixture(scope="module")
async def app(database_url: str, bootstrap: str) -> AsyncIterator[FastAPI]:
    """One app (and so one scoring engine start) for the module; tables are emptied per test."""
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


def d(days_ago: int) -> dt.date:
    return TODAY - dt.timedelta(days=days_ago)


async def test_specialist_kpis_shape_values_and_window(
    client: AsyncClient, clean_db: AsyncEngine
) -> None:
    await seed_directory(clean_db, [("north", "North", None)], [("s1", "Ann", "north")])
    await seed_daily(
        clean_db,
        [
            ("s1", d(0), "customer_satisfaction", 9.0, 10),
            ("s1", d(29), "customer_satisfaction", 8.0, 10),
            ("s1", d(30), "customer_satisfaction", 0.0, 50),  # outside 30d
            ("s1", d(3), "avg_response_time_hours", 7.25, 3),
            ("s1", d(3), "nps", -1.0, 3),
            ("s1", d(5), "training_sessions", 2.0, 2),
            ("s1", d(6), "resolution_rate", 0.0, 0),  # a bucket that went back to 0/0
            ("other", d(0), "customer_satisfaction", 0.0, 99),
        ],
    )
    r = await client.get("/v1/specialists/s1/kpis", headers=ADMIN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"specialist_id", "name", "team_id", "window", "kpis"}
    schemas.SpecialistKpis.model_validate(body)  # the documented OpenAPI shape
    assert body["specialist_id"] == "s1" and body["team_id"] == "north" and body["name"] == "Ann"
    assert body["window"] == {
        "name": "30d",
        "from": "2026-05-03",
        "to": "2026-06-01",
        "timezone": TZ,
    }
    assert list(body["kpis"]) == list(KPI_KEYS)
    assert all(set(v) == KPI_FIELDS for v in body["kpis"].values())
    csat = body["kpis"]["customer_satisfaction"]
    assert csat == {
        "value": 17 / 20,
        "numerator": 17,
        "denominator": 20,
        "grade": "qualified",
        "qualified": 0.85,
        "excellent": 0.9,
        "min_samples": 10,
    }
    art = body["kpis"]["avg_response_time_hours"]
    assert art["value"] == 7.25 / 3 and art["numerator"] == 7.25 and art["denominator"] == 3
    assert art["grade"] == "insufficient_data"
    assert (
        body["kpis"]["nps"]["value"] == pytest.approx(-100 / 3)
        and body["kpis"]["nps"]["grade"] is None
    )
    training = body["kpis"]["training_sessions"]
    assert training["value"] == 2 and training["denominator"] is None and training["grade"] is None
    rr = body["kpis"]["resolution_rate"]
    assert rr["value"] is None and rr["denominator"] == 0 and rr["grade"] == "insufficient_data"

    # A quarter window grades training; as_of moves the Nd window.
    q = (await client.get("/v1/specialists/s1/kpis?window=2026Q2", headers=ADMIN)).json()
    assert q["window"] == {
        "name": "2026Q2",
        "from": "2026-04-01",
        "to": "2026-06-30",
        "timezone": TZ,
    }
    assert q["kpis"]["training_sessions"]["grade"] == "qualified"
    assert q["kpis"]["customer_satisfaction"]["denominator"] == 70
    one = (
        await client.get(f"/v1/specialists/s1/kpis?window=1d&as_of={d(29)}", headers=ADMIN)
    ).json()
    assert one["window"]["from"] == one["window"]["to"] == str(d(29))
    assert one["kpis"]["customer_satisfaction"]["numerator"] == 8


async def test_unknown_and_no_data_specialists(client: AsyncClient, clean_db: AsyncEngine) -> None:
    await seed_directory(clean_db, specialists=[("fresh", None, None)])
    r = await client.get("/v1/specialists/ghost/kpis", headers=ADMIN)
    assert r.status_code == 404 and "ghost" in r.json()["detail"]
    body = (await client.get("/v1/specialists/fresh/kpis", headers=ADMIN)).json()
    assert body["team_id"] is None and body["name"] is None
    assert all(v["value"] is None for k, v in body["kpis"].items() if k != "training_sessions")
    for path in ("kpis/nps/history", "kpis/nps/events"):
        assert (await client.get(f"/v1/specialists/ghost/{path}", headers=ADMIN)).status_code == 404


async def test_dashboard_config_carries_the_catalogue(client: AsyncClient) -> None:
    body = (await client.get("/v1/dashboard/config", headers=ADMIN)).json()
    schemas.DashboardConfig.model_validate(body)  # the documented shape (extra=forbid)
    assert list(body["catalogue"]) == body["kpis"] == list(KPI_KEYS)
    hours = body["catalogue"]["avg_response_time_hours"]
    assert (hours["unit"], hours["higher_is_better"], hours["graded"]) == ("hours", False, True)
    assert hours["names"]["en"] == {
        "name": "Average response time",
        "label": "Avg response time",
        "short": "Response",
    }
    assert body["catalogue"]["nps"]["graded"] is False
    assert body["catalogue"]["record_accuracy"]["names"]["zh-CN"]["label"] == "服务记录准确率"


@pytest.mark.parametrize(
    ("url", "loc"),
    [
        ("/v1/specialists/s1/kpis?window=0d", ["query", "window"]),
        ("/v1/specialists/s1/kpis?window=401d", ["query", "window"]),
        ("/v1/specialists/s1/kpis?window=2026Q5", ["query", "window"]),
        ("/v1/specialists/s1/kpis?as_of=2026-02-30", ["query", "as_of"]),
        ("/v1/specialists/s1/kpis/speed/history", ["path", "kpi"]),
        ("/v1/specialists/s1/kpis/speed/events", ["path", "kpi"]),
        ("/v1/specialists/s1/kpis/nps/history?from=2026-06-02&to=2026-06-01", ["query", "from"]),
        ("/v1/specialists/s1/kpis/nps/history?from=2025-01-01&to=2026-06-01", ["query", "from"]),
        ("/v1/specialists/s1/kpis/nps/history?to=yesterday", ["query", "to"]),
        ("/v1/specialists/s1/kpis/nps/history?to=0001-01-02", ["query", "to"]),
        ("/v1/specialists/s1/kpis?window=400d&as_of=0001-01-02", ["query", "window"]),
        ("/v1/specialists/s1/kpis/nps/events?cursor=zz", ["query", "cursor"]),
        ("/v1/specialists/s1/kpis/nps/events?limit=0", ["query", "limit"]),
        ("/v1/leaderboard?kpi=speed", ["query", "kpi"]),
        ("/v1/leaderboard", ["query", "kpi"]),
        ("/v1/leaderboard?kpi=nps&window=week", ["query", "window"]),
        ("/v1/teams/north/kpis?window=qtdx", ["query", "window"]),
    ],
)
async def test_bad_parameters_are_422_naming_them(
    client: AsyncClient, clean_db: AsyncEngine, url: str, loc: list[str]
) -> None:
    await seed_directory(clean_db, [("north", "North", None)], [("s1", None, "north")])
    r = await client.get(url, headers=ADMIN)
    assert r.status_code == 422, r.text
    assert any(err["loc"] == loc for err in r.json()["errors"]), r.json()


async def test_auth_and_supervisor_scoping(
    client: AsyncClient, clean_db: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await seed_directory(
        clean_db,
        [("north", "North", None), ("south", "South", "bob")],
        [("n1", None, "north"), ("s1", None, "south"), ("loner", None, None)],
    )
    ann = await token(sessionmaker, Role.SUPERVISOR, "ann", ["north"])
    bob = await token(sessionmaker, Role.SUPERVISOR, "bob")  # owns south via teams.supervisor
    svc = await token(sessionmaker, Role.SERVICE, "zendesk")

    assert (await client.get("/v1/specialists/n1/kpis")).status_code == 401
    bad = {"Authorization": "Bearer kpi_nope"}
    assert (await client.get("/v1/specialists/n1/kpis", headers=bad)).status_code == 401
    for url in ("/v1/specialists/n1/kpis", "/v1/leaderboard?kpi=nps", "/v1/teams"):
        assert (await client.get(url, headers=svc)).status_code == 403, url

    assert (await client.get("/v1/specialists/n1/kpis", headers=ann)).status_code == 200
    for url in (
        "/v1/specialists/s1/kpis",
        "/v1/specialists/loner/kpis",
        "/v1/specialists/s1/kpis/nps/history",
        "/v1/specialists/s1/kpis/nps/events",
        "/v1/specialists/s1",
        "/v1/teams/south/kpis",
        "/v1/teams/south",
        "/v1/leaderboard?kpi=nps&team=south",
        "/v1/specialists?team=south",
    ):
        r = await client.get(url, headers=ann)
        assert r.status_code == 404, (url, r.text)
    assert (await client.get("/v1/specialists/s1/kpis", headers=bob)).status_code == 200
    assert (await client.get("/v1/teams/north/kpis", headers=bob)).status_code == 404
    # Another team's ids answer like unknown ones, so supervisors cannot probe them.
    assert (await client.get("/v1/teams/nowhere/kpis", headers=ann)).status_code == 404
    assert (await client.get("/v1/teams/nowhere/kpis", headers=ADMIN)).status_code == 404
    assert (
        await client.get("/v1/leaderboard?kpi=nps&team=nowhere", headers=ADMIN)
    ).status_code == 404

    board = (await client.get("/v1/leaderboard?kpi=nps", headers=ann)).json()
    assert [e["specialist_id"] for e in board["entries"]] == ["n1"]
    assert [t["id"] for t in (await client.get("/v1/teams", headers=bob)).json()["teams"]] == [
        "south"
    ]
    names = (await client.get("/v1/specialists", headers=ann)).json()["specialists"]
    assert names == [{"id": "n1", "name": None, "team_id": "north"}]
    everyone = (await client.get("/v1/specialists", headers=ADMIN)).json()["specialists"]
    assert [s["id"] for s in everyone] == ["loner", "n1", "s1"]

    # Directory writes are admin-only.
    for method, url, body in (
        ("PUT", "/v1/teams/north", {"name": "N"}),
        ("PUT", "/v1/specialists/n1", {"name": "x", "team_id": "north"}),
    ):
        assert (await client.request(method, url, json=body, headers=ann)).status_code == 403
        assert (await client.request(method, url, json=body)).status_code == 401


async def test_team_kpis_pooled_and_members(client: AsyncClient, clean_db: AsyncEngine) -> None:
    await seed_directory(
        clean_db,
        [("north", "North", "ann"), ("empty", "Empty", None)],
        [("a", "A", "north"), ("b", "B", "north"), ("c", None, "north"), ("x", None, None)],
    )
    await seed_daily(
        clean_db,
        [
            ("a", d(1), "resolution_rate", 9.0, 10),
            ("b", d(2), "resolution_rate", 3.0, 5),
            ("b", d(2), "avg_response_time_hours", 10.5, 2),
            ("a", d(40), "resolution_rate", 0.0, 100),
            ("x", d(1), "resolution_rate", 0.0, 100),
        ],
    )
    r = await client.get("/v1/teams/north/kpis?window=7d", headers=ADMIN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"team_id", "name", "window", "kpis", "members"}
    schemas.TeamKpis.model_validate(body)
    assert body["team_id"] == "north" and body["name"] == "North"
    assert body["window"]["name"] == "7d" and body["window"]["to"] == str(TODAY)
    pooled = body["kpis"]["resolution_rate"]
    assert (pooled["numerator"], pooled["denominator"], pooled["value"]) == (12, 15, 12 / 15)
    assert body["kpis"]["avg_response_time_hours"]["value"] == 10.5 / 2
    assert [m["specialist_id"] for m in body["members"]] == ["a", "b", "c"]
    assert all(set(m) == {"specialist_id", "name", "kpis"} for m in body["members"])
    by_id = {m["specialist_id"]: m for m in body["members"]}
    assert by_id["a"]["kpis"]["resolution_rate"]["value"] == 0.9
    assert by_id["c"]["kpis"]["resolution_rate"]["value"] is None
    assert list(by_id["c"]["kpis"]) == list(KPI_KEYS)

    empty = (await client.get("/v1/teams/empty/kpis", headers=ADMIN)).json()
    assert empty["members"] == [] and empty["kpis"]["nps"]["value"] is None


async def test_leaderboard_ranking(client: AsyncClient, clean_db: AsyncEngine) -> None:
    await seed_directory(
        clean_db,
        [("north", "North", None), ("south", "South", None)],
        [
            ("a", "A", "north"),
            ("b", "B", "north"),
            ("c", "C", "south"),
            ("d", None, "south"),
            ("e", None, None),
        ],
    )
    await seed_daily(
        clean_db,
        [
            ("a", d(0), "customer_satisfaction", 8.0, 10),
            ("b", d(0), "customer_satisfaction", 9.0, 10),
            ("c", d(0), "customer_satisfaction", 16.0, 20),
            ("e", d(0), "customer_satisfaction", 1.0, 1),
            ("a", d(0), "avg_response_time_hours", 30.0, 10),
            ("b", d(0), "avg_response_time_hours", 5.0, 10),
            ("c", d(0), "avg_response_time_hours", 100.0, 10),
        ],
    )
    board = (await client.get("/v1/leaderboard?kpi=customer_satisfaction", headers=ADMIN)).json()
    assert set(board) == {"kpi", "window", "entries"}
    schemas.Leaderboard.model_validate(board)
    assert board["kpi"] == "customer_satisfaction" and board["window"]["name"] == "30d"
    got = [(e["rank"], e["specialist_id"], e["value"]) for e in board["entries"]]
    assert got == [(1, "e", 1.0), (2, "b", 0.9), (3, "a", 0.8), (3, "c", 0.8), (5, "d", None)]
    first = board["entries"][0]
    assert set(first) == {
        "rank",
        "specialist_id",
        "name",
        "team_id",
        "value",
        "numerator",
        "denominator",
        "grade",
    }
    assert first["grade"] == "insufficient_data" and first["team_id"] is None

    fast = (
        await client.get("/v1/leaderboard?kpi=avg_response_time_hours&limit=2", headers=ADMIN)
    ).json()
    assert [e["specialist_id"] for e in fast["entries"]] == ["b", "a"]
    south = (
        await client.get("/v1/leaderboard?kpi=avg_response_time_hours&team=south", headers=ADMIN)
    ).json()
    assert [(e["specialist_id"], e["rank"]) for e in south["entries"]] == [("c", 1), ("d", 2)]


async def test_history_one_point_per_day(client: AsyncClient, clean_db: AsyncEngine) -> None:
    await seed_directory(clean_db, specialists=[("s1", None, None)])
    await seed_daily(
        clean_db,
        [
            ("s1", d(2), "nps", 2.0, 4),
            ("s1", d(0), "nps", 0.0, 0),
            ("s1", d(1), "training_sessions", 1.0, 1),
            ("s1", d(5), "nps", 1.0, 1),
        ],
    )
    r = await client.get(
        f"/v1/specialists/s1/kpis/nps/history?from={d(3)}&to={d(0)}", headers=ADMIN
    )
    assert r.status_code == 200, r.text
    body = r.json()
    schemas.History.model_validate(body)
    assert body == {
        "specialist_id": "s1",
        "kpi": "nps",
        "from": str(d(3)),
        "to": str(d(0)),
        # rolling_7d: the 7 days ending on the date, d(5) (before `from`) included.
        "points": [
            {
                "date": str(d(3)),
                "value": None,
                "numerator": 0,
                "denominator": 0,
                "rolling_7d": {"value": 100.0, "numerator": 1, "denominator": 1},
            },
            {
                "date": str(d(2)),
                "value": 50.0,
                "numerator": 2,
                "denominator": 4,
                "rolling_7d": {"value": 60.0, "numerator": 3, "denominator": 5},
            },
            {
                "date": str(d(1)),
                "value": None,
                "numerator": 0,
                "denominator": 0,
                "rolling_7d": {"value": 60.0, "numerator": 3, "denominator": 5},
            },
            {
                "date": str(d(0)),
                "value": None,
                "numerator": 0,
                "denominator": 0,
                "rolling_7d": {"value": 60.0, "numerator": 3, "denominator": 5},
            },
        ],
    }
    default = (
        await client.get("/v1/specialists/s1/kpis/training_sessions/history", headers=ADMIN)
    ).json()
    assert default["to"] == str(TODAY) and len(default["points"]) == 30
    assert default["points"][-2] == {
        "date": str(d(1)),
        "value": 1,
        "numerator": 1,
        "denominator": None,
        "rolling_7d": {"value": 1, "numerator": 1, "denominator": None},
    }
    full = await client.get(f"/v1/specialists/s1/kpis/nps/history?from={d(399)}", headers=ADMIN)
    assert full.status_code == 200 and len(full.json()["points"]) == 400


async def test_events_explain_the_value_with_paging(
    client: AsyncClient, clean_db: AsyncEngine
) -> None:
    await seed_directory(clean_db, specialists=[("s1", None, None)])
    facts = [
        ("s1", d(0), "resolution_rate", "ticket:t1", 1.0, 1),
        ("s1", d(0), "resolution_rate", "ticket:t2", 0.0, 1),
        ("s1", d(3), "resolution_rate", "ticket:t0", 1.0, 1),
        ("s1", d(3), "resolution_rate", "ticket:t9", 1.0, 1),
        ("s1", d(9), "resolution_rate", "ticket:old", 1.0, 1),  # outside 7d
        ("s1", d(0), "nps", "event:e1", 1.0, 1),
    ]
    await seed_facts(clean_db, facts)
    await seed_daily(
        clean_db,
        [
            ("s1", d(0), "resolution_rate", 1.0, 2),
            ("s1", d(3), "resolution_rate", 2.0, 2),
            ("s1", d(9), "resolution_rate", 1.0, 1),
        ],
    )
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        url = "/v1/specialists/s1/kpis/resolution_rate/events?window=7d&limit=3"
        r = await client.get(url + (f"&cursor={cursor}" if cursor else ""), headers=ADMIN)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"items", "next_cursor", "kept_from"}
        assert body["kept_from"] is None  # KPI_LEDGER_RETENTION_DAYS never dropped a month
        schemas.FactsPage.model_validate(body)
        items += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 2
    assert [(i["day"], i["source"]) for i in items] == [
        (str(d(3)), "ticket:t0"),
        (str(d(3)), "ticket:t9"),
        (str(d(0)), "ticket:t1"),
        (str(d(0)), "ticket:t2"),
    ]
    kpis = (await client.get("/v1/specialists/s1/kpis?window=7d", headers=ADMIN)).json()["kpis"]
    assert sum(i["num"] for i in items) == kpis["resolution_rate"]["numerator"]
    assert sum(i["den"] for i in items) == kpis["resolution_rate"]["denominator"]
    exact = (
        await client.get(
            "/v1/specialists/s1/kpis/resolution_rate/events?window=7d&limit=4", headers=ADMIN
        )
    ).json()
    assert len(exact["items"]) == 4 and exact["next_cursor"] is None


async def test_events_say_from_which_day_the_ledger_kept_facts(
    client: AsyncClient, clean_db: AsyncEngine
) -> None:
    await seed_directory(clean_db, specialists=[("s1", None, None)])
    await seed_facts(clean_db, [("s1", d(1), "resolution_rate", "ticket:t1", 1.0, 1)])
    async with clean_db.begin() as conn:
        await conn.execute(
            text("INSERT INTO ledger_retention (kept_from) VALUES (:d)"), {"d": d(3)}
        )
    r = await client.get("/v1/specialists/s1/kpis/resolution_rate/events?window=7d", headers=ADMIN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kept_from"] == str(d(3))
    assert [i["source"] for i in body["items"]] == ["ticket:t1"]


async def test_directory_writes(
    client: AsyncClient, clean_db: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    r = await client.put(
        "/v1/teams/north", json={"name": "North", "supervisor": "ann"}, headers=ADMIN
    )
    assert r.status_code == 200 and r.json() == {
        "id": "north",
        "name": "North",
        "supervisor": "ann",
    }
    r = await client.put("/v1/teams/north", json={"name": "North 2"}, headers=ADMIN)
    assert r.json() == {"id": "north", "name": "North 2", "supervisor": None}
    r = await client.put(
        "/v1/specialists/s1", json={"name": "Sam", "team_id": "nowhere"}, headers=ADMIN
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "team_id"]
    r = await client.put(
        "/v1/specialists/s1", json={"name": "Sam", "team_id": "north"}, headers=ADMIN
    )
    assert r.status_code == 200 and r.json() == {
        "id": "s1",
        "name": "Sam",
        "team_id": "north",
        "aliases": {},
    }
    r = await client.put("/v1/specialists/s1", json={"team_id": None}, headers=ADMIN)
    assert r.json() == {"id": "s1", "name": None, "team_id": None, "aliases": {}}
    r = await client.put("/v1/teams/north", json={"name": ""}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "name"]
    r = await client.put("/v1/teams/north", json={"name": "N", "colour": "red"}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "colour"]
    r = await client.put("/v1/specialists/" + "x" * 129, json={}, headers=ADMIN)
    assert r.status_code == 422
    await client.put("/v1/specialists/s1", json={"team_id": "north"}, headers=ADMIN)
    r = await client.get("/v1/teams/north", headers=ADMIN)
    assert r.json() == {"id": "north", "name": "North 2", "supervisor": None}
    one = (await client.get("/v1/specialists/s1", headers=ADMIN)).json()
    assert (one["team_id"], one["team_name"]) == ("north", "North 2")
    await client.put("/v1/specialists/s1", json={"team_id": None}, headers=ADMIN)
    one = (await client.get("/v1/specialists/s1", headers=ADMIN)).json()
    assert (one["team_id"], one["team_name"]) == (None, None)
    assert (await client.get("/v1/specialists?team=nowhere", headers=ADMIN)).status_code == 404


async def test_specialist_aliases_map_one_agent_to_one_specialist(
    client: AsyncClient, clean_db: AsyncEngine
) -> None:
    url = "/v1/specialists/{}"
    aliases = {"zendesk": "3612", "email": " Li.Na@Example.com "}
    r = await client.put(url.format("s1"), json={"name": "Li", "aliases": aliases}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["aliases"] == {"email": "li.na@example.com", "zendesk": "3612"}
    assert "Nothing already counted moves" in r.json()["notice"]
    shown = (await client.get(url.format("s1"), headers=ADMIN)).json()
    assert shown["aliases"] == r.json()["aliases"] and "notice" not in shown
    kept = (await client.put(url.format("s1"), json={"name": "Li Na"}, headers=ADMIN)).json()
    assert kept["aliases"] == shown["aliases"] and "notice" not in kept
    taken = await client.put(url.format("s2"), json={"aliases": {"zendesk": "3612"}}, headers=ADMIN)
    assert taken.status_code == 409
    assert taken.json()["errors"][0]["loc"] == ["body", "aliases", "zendesk"]
    assert "'s1'" in taken.json()["errors"][0]["msg"]
    assert (await client.get(url.format("s2"), headers=ADMIN)).status_code == 404  # rolled back
    cleared = await client.put(url.format("s1"), json={"aliases": {}}, headers=ADMIN)
    assert cleared.json()["aliases"] == {}
    moved = await client.put(url.format("s2"), json={"aliases": {"zendesk": "3612"}}, headers=ADMIN)
    assert moved.status_code == 200 and moved.json()["aliases"] == {"zendesk": "3612"}
    for bad in ({"intercom": "1"}, {"zendesk": ""}, {"zendesk": "36\x0012"}, {"email": 5}):
        r = await client.put(url.format("s3"), json={"aliases": bad}, headers=ADMIN)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"][:2] == ["body", "aliases"]


# A NUL (PostgreSQL refuses it as text) or a lone surrogate (JSON bodies are parsed by the
# standard library, which lets "\ud800" through) is a 422 naming it, never a 500.
@pytest.mark.parametrize(
    ("method", "url", "body", "loc"),
    [
        ("GET", "/v1/specialists/a%00b/kpis", None, ["path", "specialist_id"]),
        ("GET", "/v1/specialists/a%00b", None, ["path", "specialist_id"]),
        ("GET", "/v1/specialists/%00/kpis/nps/history", None, ["path", "specialist_id"]),
        ("GET", "/v1/specialists/%00/kpis/nps/events", None, ["path", "specialist_id"]),
        ("GET", "/v1/specialists/%00/appraisals/2026Q2", None, ["path", "specialist_id"]),
        ("GET", "/v1/specialists/%00/meetings", None, ["path", "specialist_id"]),
        ("GET", "/v1/teams/a%00b", None, ["path", "team_id"]),
        ("GET", "/v1/teams/a%00b/kpis", None, ["path", "team_id"]),
        ("GET", "/v1/specialists?team=a%00b", None, ["query", "team"]),
        ("GET", "/v1/leaderboard?kpi=nps&team=%00", None, ["query", "team"]),
        ("GET", "/v1/dashboard/overview?team=%00", None, ["query", "team"]),
        ("GET", "/v1/appraisals/2026Q2?team=%00", None, ["query", "team"]),
        ("GET", "/v1/plans?team=%00", None, ["query", "team"]),
        ("PUT", "/v1/teams/a%00b", {"name": "N"}, ["path", "team_id"]),
        ("PUT", "/v1/teams/a%09b", {"name": "N"}, ["path", "team_id"]),  # created: id rule
        ("PUT", "/v1/specialists/s%0A1", {}, ["path", "specialist_id"]),
        ("PUT", "/v1/teams/north", '{"name": "N\\u0000"}', ["body", "name"]),
        ("PUT", "/v1/teams/north", '{"name": "N\\ud800"}', ["body", "name"]),
        ("PUT", "/v1/teams/north", '{"name": "N", "supervisor": "ann\\n"}', ["body", "supervisor"]),
        ("PUT", "/v1/specialists/s1", '{"name": "\\udc00"}', ["body", "name"]),
        ("PUT", "/v1/specialists/s1", '{"team_id": "n\\u0000"}', ["body", "team_id"]),
        ("PUT", "/v1/specialists/s1", b'{"name": "\xed\xa0\x80"}', ["body", "name"]),
        (
            "POST",
            "/v1/specialists/s1/meetings",
            '{"date": "2026-05-01", "participants": ["ann\\u0000"]}',
            ["body", "participants", 0],
        ),
        (
            "POST",
            "/v1/specialists/s1/meetings",
            '{"date": "2026-05-01", "participants": ["ann"], "notes": "\\ud83d"}',
            ["body", "notes"],
        ),
        ("PUT", "/v1/specialists/s1/plans/2026Q3", '{"notes": "a\\u0000"}', ["body", "notes"]),
    ],
)
async def test_unstorable_text_is_422_naming_it(
    client: AsyncClient, clean_db: AsyncEngine, method: str, url: str, body: Any, loc: list[Any]
) -> None:
    await seed_directory(clean_db, [("north", "North", None)], [("s1", None, "north")])
    content = body if isinstance(body, str | bytes) else None
    r = await client.request(
        method,
        url,
        content=content,
        json=None if content is not None else body,
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    (err,) = r.json()["errors"]
    assert (err["loc"], err["type"]) == (loc, "invalid_text")
    assert err["msg"].startswith("must not contain")


async def test_text_rules_keep_what_every_sink_can_store(
    client: AsyncClient, clean_db: AsyncEngine
) -> None:
    # An id stored before the id rule existed (a control character) can still be looked up.
    await seed_directory(clean_db, [("north", "North", None)], [("old\x01id", "Old", "north")])
    r = await client.get("/v1/specialists/old%01id", headers=ADMIN)
    assert r.status_code == 200 and r.json()["id"] == "old\x01id"
    # Names may hold any character but controls (bidi controls and U+2028 included); notes
    # may hold newlines and tabs.
    name = "李伟 \u202e😀\u2028"
    r = await client.put(
        "/v1/specialists/s-2", json={"name": name, "team_id": "north"}, headers=ADMIN
    )
    assert r.status_code == 200 and r.json()["name"] == name
    # The export shows it as U+FFFD (XML cannot carry it) instead of failing.
    r = await client.get("/v1/appraisals/2026Q2?team=north&format=xlsx", headers=ADMIN)
    assert r.status_code == 200, r.text
    ids = [row[0] for row in load_workbook(io.BytesIO(r.content)).worksheets[0].values]
    assert "old\ufffdid" in ids and "s-2" in ids
    r = await client.post(
        "/v1/specialists/s-2/meetings",
        json={"date": "2026-05-01", "participants": ["ann"], "notes": "line 1\nline\t2"},
        headers=ADMIN,
    )
    assert r.status_code == 201 and r.json()["notes"] == "line 1\nline\t2"


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.integers(0, 60),
            st.sampled_from(KPI_KEYS),
            st.integers(0, 40),
            st.integers(0, 40),
        ),
        max_size=40,
        unique_by=lambda r: (r[0], r[1], r[2]),
    ),
    window=st.sampled_from(["1d", "7d", "30d", "45d", "qtd", "2026Q2", "2026Q1"]),
    as_of_back=st.integers(0, 20),
    kpi=st.sampled_from(KPI_KEYS),
)
async def test_window_sums_match_reference(
    client: AsyncClient,
    clean_db: AsyncEngine,
    rows: list[tuple[str, int, str, int, int]],
    window: str,
    as_of_back: int,
    kpi: str,
) -> None:
    """Any window over random buckets equals summing the buckets in Python and grading them."""
    async with clean_db.begin() as conn:
        await conn.execute(text("TRUNCATE kpi_daily, specialists CASCADE"))
    await seed_directory(
        clean_db, specialists=[("a", None, None), ("b", None, None), ("c", None, None)]
    )
    # num <= den keeps ratio buckets realistic; response hours get a fractional part.
    daily = [
        (s, d(back), m, float(min(n, k)) + (0.25 if m == "avg_response_time_hours" else 0.0), k)
        for s, back, m, n, k in rows
    ]
    await seed_daily(clean_db, daily)
    as_of = d(as_of_back)
    win = parse_window(window, as_of)
    expected: dict[str, dict[str, tuple[float, int]]] = {"a": {}, "b": {}, "c": {}}
    for s, day, m, n, k in daily:
        if win.contains(day):
            num, den = expected[s].get(m, (0.0, 0))
            expected[s][m] = (num + n, den + k)

    for sid in ("a", "b"):
        body = (
            await client.get(
                f"/v1/specialists/{sid}/kpis?window={window}&as_of={as_of}", headers=ADMIN
            )
        ).json()
        want = {k: v.to_dict() for k, v in evaluate_all(expected[sid], win).items()}
        for key in KPI_KEYS:
            got, ref = body["kpis"][key], want[key]
            assert got["denominator"] == ref["denominator"] and got["grade"] == ref["grade"], key
            for field in ("value", "numerator"):
                assert (got[field] is None) == (ref[field] is None), (key, field)
                if ref[field] is not None:
                    assert math.isclose(got[field], ref[field], rel_tol=1e-12, abs_tol=1e-12)

    board = (
        await client.get(f"/v1/leaderboard?kpi={kpi}&window={window}&as_of={as_of}", headers=ADMIN)
    ).json()
    line = DEFAULT_LINES[kpi]
    values = {s: evaluate(kpi, *expected[s].get(kpi, (0.0, 0)), line, win).value for s in "abc"}
    entries = board["entries"]
    assert sorted(e["specialist_id"] for e in entries) == ["a", "b", "c"]
    for e in entries:
        want_value = values[e["specialist_id"]]
        assert (e["value"] is None) == (want_value is None)
        if want_value is not None:
            assert math.isclose(e["value"], want_value, rel_tol=1e-12, abs_tol=1e-12)
    present = [e["value"] for e in entries if e["value"] is not None]
    assert [e["value"] for e in entries[: len(present)]] == present
    # Best first in the catalogue's direction (response/resolution time, reopen rate: lowest).
    assert present == sorted(present, reverse=CATALOGUE[kpi].higher_is_better)


def test_real_service_process_answers_kpis(
    database_url: str, bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    import asyncio

    from shared.db import create_engine

    async def seed() -> None:
        engine = create_engine(database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("DELETE FROM kpi_daily WHERE specialist_id = 'proc-s1'"))
                await conn.execute(
                    text(
                        "INSERT INTO specialists (id, name) VALUES ('proc-s1', 'Proc') "
                        "ON CONFLICT (id) DO NOTHING"
                    )
                )
            today = dt.datetime.now(dt.UTC).date()
            await seed_daily(engine, [("proc-s1", today, "record_accuracy", 4.0, 5)])
        finally:
            await engine.dispose()

    asyncio.run(seed())
    env = service_env(
        database_url,
        bootstrap,
        KPI_TOPIC_PREFIX=topics.prefix,
        KPI_SCORING_SESSION_TIMEOUT_MS="1000",
    )
    svc = start_service("scoring", env, tmp_path)
    try:
        wait_status(f"{svc.url}/healthz", 200)
        r = httpx.get(f"{svc.url}/v1/specialists/proc-s1/kpis?window=7d", headers=ADMIN, timeout=10)
        assert r.status_code == 200, (r.text, svc.tail())
        body = r.json()
        assert body["window"]["timezone"] == "UTC"
        assert body["kpis"]["record_accuracy"]["value"] == 0.8
        assert body["kpis"]["record_accuracy"]["grade"] == "unqualified"
        assert httpx.get(f"{svc.url}/v1/specialists/proc-s1/kpis").status_code == 401
        spec = httpx.get(f"{svc.url}/openapi.json").json()
        assert "/v1/leaderboard" in spec["paths"]
    finally:
        svc.stop()
