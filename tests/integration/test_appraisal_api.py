"""Quarterly appraisal API against the real app and migrations: grades, freeze, plans, exports."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from openpyxl import load_workbook
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.scoring.appraisal.schemas import (
    Appraisal,
    FinalizeResult,
    Meeting,
    MeetingList,
    Plan,
    PlanList,
    TeamAppraisals,
)
from services.scoring.engine.handlers import process_batch
from services.scoring.kpi.measure import Measure
from shared.auth import Role
from shared.catalogue import APPRAISED_KEYS
from shared.db import session_scope
from shared.events import validate_event_obj
from shared.kafka import ensure_topics
from shared.settings import load_settings
from shared.topics import Topics
from tests.integration.test_scoring_api import seed_daily, seed_directory, token
from tests.service_helpers import ADMIN_TOKEN

TZ = "Asia/Shanghai"
NOW = dt.datetime(2026, 10, 5, 2, 0, tzinfo=dt.UTC)  # 2026Q3 is over, Q4 has begun
TODAY = dt.date(2026, 10, 5)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CALENDAR = Path(__file__).resolve().parents[2] / "examples" / "calendar-cn-2026.yaml"
Q3 = dt.date(2026, 8, 10)
Q2 = dt.date(2026, 5, 10)


@pytest.fixture(scope="module")
async def app(database_url: str, bootstrap: str) -> AsyncIterator[FastAPI]:
    topics = Topics(f"t{uuid.uuid4().hex[:10]}.")
    await ensure_topics(bootstrap, 1, topics.all)
    cfg = load_settings(
        database_url=database_url,
        kafka_bootstrap=bootstrap,
        bootstrap_admin_token=ADMIN_TOKEN,
        timezone=TZ,
        topic_prefix=topics.prefix,
        scoring_session_timeout_ms=1000,
        business_calendar=str(CALENDAR),
        # The digest tests drive scans with their own clocks (test_team_digests.py).
        digest_schedule="off",
    )
    application = build()(cfg)
    async with application.router.lifespan_context(application):
        application.state.clock = lambda: NOW
        yield application


def build() -> Any:
    from services.scoring.app import build_app

    return build_app


@pytest.fixture
async def client(app: FastAPI, clean_db: AsyncEngine) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://scoring") as c:
        yield c


EXCELLENT_Q = [
    ("customer_satisfaction", 19.0, 20),
    ("resolution_rate", 20.0, 20),
    ("avg_response_time_hours", 50.0, 10),
    ("record_accuracy", 10.0, 10),
    ("followup_rate", 17.0, 20),
    ("training_sessions", 1.0, 1),
]
UNQUALIFIED_Q = [
    ("customer_satisfaction", 19.0, 20),
    ("resolution_rate", 16.0, 20),  # 0.80 < 0.90
    ("record_accuracy", 2.0, 2),  # insufficient data
]


def rows(sid: str, day: dt.date, metrics: Iterable[tuple[str, float, int]]) -> list[Any]:
    return [(sid, day, m, n, k) for m, n, k in metrics]


async def seed_org(engine: AsyncEngine) -> None:
    await seed_directory(
        engine,
        [("north", "North", "ann"), ("south", "South", None)],
        [("s1", "Li Wei", "north"), ("s2", "王芳", "north"), ("s3", "Bo", "south")],
    )
    await seed_daily(
        engine,
        rows("s1", Q3, EXCELLENT_Q)
        + rows("s1", Q2, EXCELLENT_Q)
        + rows("s2", Q3, UNQUALIFIED_Q)
        + rows("s3", Q3, [("customer_satisfaction", 10.0, 10)]),
    )


async def test_specialist_appraisal_grades_incentive_and_calendar(
    client: AsyncClient, clean_db: AsyncEngine
) -> None:
    await seed_org(clean_db)
    r = await client.get("/v1/specialists/s1/appraisals/2026q3", headers=ADMIN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["specialist_id"] == "s1" and body["quarter"] == "2026Q3"
    Appraisal.model_validate(body)  # the documented shape, field for field (extra=forbid)
    assert body["window"] == {"name": "2026Q3", "from": "2026-07-01", "to": "2026-09-30",
                              "timezone": TZ}  # fmt: skip
    # The appraisal stays on the SPEC §1 table: the §3a measures are not part of it.
    assert list(body["kpis"]) == list(APPRAISED_KEYS)
    assert body["kpis"]["resolution_rate"] == {
        "value": 1.0,
        "numerator": 20,
        "denominator": 20,
        "grade": "excellent",
        "qualified": 0.9,
        "excellent": 0.95,
        "min_samples": 10,
    }
    assert body["overall_grade"] == "excellent"
    assert body["insufficient_data"] == ["collaboration_score"]
    assert body["basis"]["excellent"] == [
        "customer_satisfaction",
        "resolution_rate",
        "avg_response_time_hours",
        "record_accuracy",
    ]
    # The scheme's rewards for an excellent quarter (Q2 was excellent too: a streak of 2).
    assert body["incentive"]["actions"] == [
        "recognition",
        "pay_adjustment_candidate",
        "promotion_candidate",
        "development_opportunity",
    ]
    assert body["incentive"]["consecutive_excellent"] == 2
    assert body["calendar"] == "cn-2026"
    assert body["finalized"] is False and body["live"] is None and body["differs"] is False

    q2 = (await client.get("/v1/specialists/s1/appraisals/2026Q2", headers=ADMIN)).json()
    assert q2["incentive"]["consecutive_excellent"] == 1
    assert q2["provisional"] is False  # over, though not finalised
    assert body["meeting_status"] == "none" and body["decision"] is None

    s2 = (await client.get("/v1/specialists/s2/appraisals/2026Q3", headers=ADMIN)).json()
    assert s2["overall_grade"] == "unqualified"
    assert s2["basis"]["unqualified"] == ["resolution_rate"]
    assert s2["basis"]["training_delivered"] is False
    assert "record_accuracy" in s2["insufficient_data"]
    assert s2["kpis"]["record_accuracy"]["grade"] == "insufficient_data"
    assert s2["incentive"]["actions"] == ["improvement_plan", "coaching"]
    q4 = (await client.get("/v1/specialists/s2/appraisals/2026Q4", headers=ADMIN)).json()
    assert q4["provisional"] is True and q4["finalized"] is False


async def test_bad_parameters(client: AsyncClient, clean_db: AsyncEngine) -> None:
    await seed_org(clean_db)
    r = await client.get("/v1/specialists/s1/appraisals/2026Q5", headers=ADMIN)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["path", "quarter"]
    r = await client.get("/v1/specialists/s1/appraisals/30d", headers=ADMIN)
    assert r.status_code == 422
    r = await client.get("/v1/appraisals/2026Q3?team=north&format=pdf", headers=ADMIN)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "format"]
    r = await client.get("/v1/appraisals/2026Q3?team=north&lang=fr", headers=ADMIN)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "lang"]
    assert (
        await client.get("/v1/specialists/ghost/appraisals/2026Q3", headers=ADMIN)
    ).status_code == 404
    assert (await client.get("/v1/appraisals/2026Q3?team=ghost", headers=ADMIN)).status_code == 404
    assert (await client.get("/v1/appraisals/2026Q3")).status_code == 401


def ev(**fields: Any) -> Any:
    return validate_event_obj(fields)


async def apply(sm: async_sessionmaker[AsyncSession], events: list[Any], hours: Any = None) -> None:
    async with session_scope(sm) as session:
        await process_batch(
            session, events, measure=Measure(dt.timezone(dt.timedelta(hours=8)), hours)
        )


def closures(sid: str, n: int, resolved: bool, prefix: str, day: str) -> list[Any]:
    return [
        ev(event_id=f"{prefix}{i}", type="ticket.closed", occurred_at=f"{day}T10:00:00+08:00",
           ticket_id=f"{prefix}t{i}", specialist_id=sid, resolved=resolved)
        for i in range(n)
    ]  # fmt: skip


async def test_finalise_freezes_and_a_late_event_shows_beside_it(
    client: AsyncClient,
    clean_db: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await seed_org(clean_db)
    await apply(sessionmaker, closures("s3", 10, True, "a", "2026-08-03"))
    zoe = await token(sessionmaker, Role.SUPERVISOR, "zoe", ["south"])
    r = await client.post("/v1/appraisals/2026Q3/finalize?team=north", headers=zoe)
    assert r.status_code == 404  # not her team: like an unknown one
    r = await client.post("/v1/appraisals/2026Q4/finalize?team=south", headers=ADMIN)
    assert r.status_code == 409 and "not over" in r.json()["detail"]
    r = await client.post("/v1/appraisals/2026Q3/finalize?team=nowhere", headers=ADMIN)
    assert r.status_code == 404

    r = await client.post("/v1/appraisals/2026Q3/finalize?team=south", headers=ADMIN)
    assert r.status_code == 200, r.text
    done = r.json()
    FinalizeResult.model_validate(done)
    assert done["frozen"] == 1 and done["already_finalized"] == 0
    assert done["finalized_by"] == "bootstrap-admin"
    assert done["plans_proposed"] == ["s3"] and done["plan_quarter"] == "2026Q4"  # no training
    before = (await client.get("/v1/specialists/s3/appraisals/2026Q3", headers=ADMIN)).json()
    assert before["finalized"] is True and before["differs"] is False
    assert before["finalized_by"] == "bootstrap-admin"
    assert before["finalized_at"].startswith("2026-10-05T02:00:00")
    assert before["kpis"]["resolution_rate"]["denominator"] == 10

    # A late event for Q3 arrives after finalisation: two more closures, unresolved.
    await apply(sessionmaker, closures("s3", 2, False, "late", "2026-09-30"))
    after = (await client.get("/v1/specialists/s3/appraisals/2026Q3", headers=ADMIN)).json()
    frozen_keys = ("kpis", "overall_grade", "incentive", "basis", "calendar")
    assert {k: after[k] for k in frozen_keys} == {k: before[k] for k in frozen_keys}
    assert after["live"]["kpis"]["resolution_rate"]["denominator"] == 12
    assert after["live"]["kpis"]["resolution_rate"]["grade"] == "unqualified"
    assert after["differs"] is True
    assert Appraisal.model_validate(after).live is not None
    changed = {d["field"]: (d["frozen"], d["live"]) for d in after["differences"]}
    assert changed["kpis.resolution_rate.denominator"] == (10, 12)
    assert changed["kpis.resolution_rate.grade"] == ("excellent", "unqualified")

    # Finalising again never replaces a snapshot.
    again = (await client.post("/v1/appraisals/2026Q3/finalize", headers=ADMIN)).json()
    assert again["already_finalized"] == 1 and again["frozen"] == 2  # s1 and s2
    still = (await client.get("/v1/specialists/s3/appraisals/2026Q3", headers=ADMIN)).json()
    assert still["kpis"] == before["kpis"] and still["finalized_at"] == before["finalized_at"]
    team = (await client.get("/v1/appraisals/2026Q3?team=south", headers=ADMIN)).json()
    assert [f["team_id"] for f in team["finalizations"]] == ["south", None]
    assert team["appraisals"][0]["differs"] is True
    TeamAppraisals.model_validate(team)

    # The unqualified s2 got a draft plan for Q4 at the org-wide finalisation.
    plan = (await client.get("/v1/specialists/s2/plans/2026Q4", headers=ADMIN)).json()
    assert plan["status"] == "draft" and plan["origin"] == "finalization:2026Q3"
    Plan.model_validate(plan)
    assert [(g["kpi"], g["target"], g["due"], g["baseline"]) for g in plan["goals"]] == [
        ("resolution_rate", 0.9, "2026-12-31", 0.8),
        ("training_sessions", 1.0, "2026-12-31", 0.0),
    ]
    s1_plan = await client.get("/v1/specialists/s1/plans/2026Q4", headers=ADMIN)
    assert s1_plan.status_code == 404  # excellent: no plan


async def test_supervisor_scoping(
    client: AsyncClient, clean_db: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await seed_org(clean_db)
    ann = await token(sessionmaker, Role.SUPERVISOR, "ann")  # owns north as its supervisor
    svc = await token(sessionmaker, Role.SERVICE, "zendesk")
    assert (
        await client.get("/v1/specialists/s1/appraisals/2026Q3", headers=ann)
    ).status_code == 200
    assert (
        await client.get("/v1/specialists/s3/appraisals/2026Q3", headers=ann)
    ).status_code == 404
    assert (
        await client.get("/v1/specialists/s1/appraisals/2026Q3", headers=svc)
    ).status_code == 403
    assert (await client.get("/v1/appraisals/2026Q3?team=south", headers=ann)).status_code == 404
    mine = (await client.get("/v1/appraisals/2026Q3", headers=ann)).json()
    assert [a["specialist_id"] for a in mine["appraisals"]] == ["s1", "s2"]
    assert mine["summary"] == {"excellent": 1, "qualified": 0, "unqualified": 1,
                               "insufficient_data": 0}  # fmt: skip
    everyone = (await client.get("/v1/appraisals/2026Q3", headers=ADMIN)).json()
    assert [a["specialist_id"] for a in everyone["appraisals"]] == ["s1", "s2", "s3"]
    csv_south = await client.get("/v1/appraisals/2026Q3?team=south&format=csv", headers=ann)
    assert csv_south.status_code == 404

    meeting = {"date": "2026-10-04", "participants": ["ann", "s3"], "notes": "x"}
    r = await client.post("/v1/specialists/s3/meetings", json=meeting, headers=ann)
    assert r.status_code == 404
    r = await client.post("/v1/specialists/s1/meetings", json=meeting, headers=ann)
    assert r.status_code == 201
    assert (await client.get("/v1/specialists/s3/meetings", headers=ann)).status_code == 404
    goal = {"goals": [{"kpi": "resolution_rate", "target": 0.9, "due": "2026-12-31"}]}
    r = await client.put("/v1/specialists/s3/plans/2026Q4", json=goal, headers=ann)
    assert r.status_code == 404
    r = await client.put("/v1/specialists/s2/plans/2026Q4", json=goal, headers=ann)
    assert r.status_code == 200
    r = await client.put("/v1/specialists/s3/plans/2026Q4", json=goal, headers=ADMIN)
    assert r.status_code == 200
    r = await client.post(
        "/v1/specialists/s3/plans/2026Q4/status", json={"status": "on_track"}, headers=ann
    )
    assert r.status_code == 404
    plans = (await client.get("/v1/plans?quarter=2026Q4", headers=ann)).json()["plans"]
    assert [p["specialist_id"] for p in plans] == ["s2"]
    assert (await client.get("/v1/plans?team=south", headers=ann)).status_code == 404
    every = (await client.get("/v1/plans", headers=ADMIN)).json()["plans"]
    assert [p["specialist_id"] for p in every] == ["s2", "s3"]


async def test_meetings(client: AsyncClient, clean_db: AsyncEngine) -> None:
    await seed_org(clean_db)
    body = {"date": "2026-10-04", "participants": ["ann", "s1"], "notes": "反馈面谈：表现优秀",
            "quarter": "2026q3"}  # fmt: skip
    r = await client.post("/v1/specialists/s1/meetings", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["quarter"] == "2026Q3" and made["date"] == "2026-10-04"
    Meeting.model_validate(made)
    assert made["participants"] == ["ann", "s1"] and made["created_by"] == "bootstrap-admin"
    later = {"date": "2026-11-02", "participants": ["ann"], "notes": "follow-up"}
    await client.post("/v1/specialists/s1/meetings", json=later, headers=ADMIN)
    listed = (await client.get("/v1/specialists/s1/meetings", headers=ADMIN)).json()["meetings"]
    assert [m["date"] for m in listed] == ["2026-10-04", "2026-11-02"]
    q3 = (await client.get("/v1/specialists/s1/meetings?quarter=2026Q3", headers=ADMIN)).json()
    MeetingList.model_validate(q3)
    assert [m["notes"] for m in q3["meetings"]] == ["反馈面谈：表现优秀"]
    bad = await client.post(
        "/v1/specialists/s1/meetings", json={**body, "quarter": "Q3"}, headers=ADMIN
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["body", "quarter"]
    bad = await client.post(
        "/v1/specialists/s1/meetings", json={**body, "participants": []}, headers=ADMIN
    )
    assert bad.status_code == 422 and "participants" in bad.json()["errors"][0]["loc"]
    ghost = await client.post("/v1/specialists/ghost/meetings", json=body, headers=ADMIN)
    assert ghost.status_code == 404


async def test_plan_lifecycle_and_progress(client: AsyncClient, clean_db: AsyncEngine) -> None:
    await seed_org(clean_db)
    url = "/v1/specialists/s2/plans/2026Q4"
    assert (await client.get(url, headers=ADMIN)).status_code == 404
    plan = {
        "goals": [
            {"kpi": "resolution_rate", "target": 0.9, "due": "2026-12-31", "baseline": 0.8},
            {"kpi": "training_sessions", "target": 1, "due": "2026-10-31", "baseline": 0},
        ],
        "notes": "improve closures",
    }
    r = await client.put(url, json=plan, headers=ADMIN)
    assert r.status_code == 200, r.text
    made = r.json()
    assert made["status"] == "open" and made["origin"] == "manual"
    assert [g["status"] for g in made["goals"]] == ["insufficient_data", "behind"]
    assert made["progress"] == {"suggested_status": "open", "as_of": "2026-10-05"}

    # Live KPIs move: 17/20 resolved in Q4 (better than the 0.8 baseline), one training.
    await seed_daily(
        clean_db,
        rows(
            "s2",
            dt.date(2026, 10, 2),
            [("resolution_rate", 17.0, 20), ("training_sessions", 1.0, 1)],
        ),
    )
    now = (await client.get(url, headers=ADMIN)).json()
    goals = {g["kpi"]: g for g in now["goals"]}
    assert goals["resolution_rate"]["status"] == "on_track"
    assert goals["resolution_rate"]["value"] == 0.85
    assert goals["resolution_rate"]["measured"] == {"from": "2026-10-01", "to": "2026-10-05"}
    assert goals["training_sessions"]["status"] == "achieved"
    assert now["progress"]["suggested_status"] == "on_track"

    async def move(status: str) -> Any:
        return await client.post(f"{url}/status", json={"status": status}, headers=ADMIN)

    assert (await move("on_track")).json()["status"] == "on_track"
    r = await move("draft")
    assert r.status_code == 409 and "from 'on_track' to 'draft'" in r.json()["detail"]
    assert (await move("achieved")).json()["status"] == "achieved"
    r = await client.put(url, json={**plan, "status": "missed"}, headers=ADMIN)
    assert r.status_code == 409
    assert (await move("open")).json()["status"] == "open"
    r = await move("finished")
    assert r.status_code == 422
    r = await client.put(url, json={"goals": [{"kpi": "nps", "target": 1, "due": "2026-12-31"}]},
                         headers=ADMIN)  # fmt: skip
    assert r.status_code == 422
    r = await client.put(
        url,
        json={"goals": [{"kpi": "resolution_rate", "target": 90, "due": "2026-12-31"}]},
        headers=ADMIN,
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "goals[0]"]
    assert "goals[0].target" in r.json()["errors"][0]["msg"]
    listed = (await client.get("/v1/plans?quarter=2026Q4&status=open", headers=ADMIN)).json()
    assert [p["specialist_id"] for p in listed["plans"]] == ["s2"]
    PlanList.model_validate(listed)
    none = (await client.get("/v1/plans?quarter=2026Q4&status=missed", headers=ADMIN)).json()
    assert none["plans"] == []


# -- exports --------------------------------------------------------------------------------

EN_HEADERS = [
    "Specialist ID", "Name", "Team", "Quarter",
    "Customer satisfaction value", "Customer satisfaction grade",
    "Resolution rate value", "Resolution rate grade",
    "Avg response time (h) value", "Avg response time (h) grade",
    "Record accuracy value", "Record accuracy grade",
    "Follow-up rate value", "Follow-up rate grade",
    "Collaboration value", "Collaboration grade",
    "Training sessions value", "Training sessions grade",
    "NPS value",
    "Overall grade", "Suggested incentive", "Finalised", "Finalised at", "Live differs",
    "Calendar", "Provisional", "Feedback meeting", "Decision taken", "Decision amount",
    "Decision level", "Decided by", "Decided at", "Acknowledged at",
]  # fmt: skip


async def test_csv_export_read_back(client: AsyncClient, clean_db: AsyncEngine) -> None:
    await seed_org(clean_db)
    r = await client.get("/v1/appraisals/2026Q3?team=north&format=csv&lang=en", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="appraisal-2026Q3-north.csv"' in r.headers["content-disposition"]
    assert r.content.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert table[0] == EN_HEADERS
    assert len(table) == 3
    s1 = dict(zip(EN_HEADERS, table[1], strict=True))
    assert s1["Specialist ID"] == "s1" and s1["Name"] == "Li Wei" and s1["Team"] == "north"
    assert s1["Quarter"] == "2026Q3"
    assert s1["Customer satisfaction value"] == "0.95"
    assert s1["Customer satisfaction grade"] == "excellent"
    assert s1["Avg response time (h) value"] == "5.0"
    assert s1["Collaboration value"] == "" and s1["Collaboration grade"] == "insufficient data"
    assert s1["Training sessions value"] == "1" and s1["Training sessions grade"] == "qualified"
    assert s1["NPS value"] == ""
    assert s1["Overall grade"] == "excellent"
    assert s1["Suggested incentive"] == (
        "recognition; pay adjustment; promotion consideration; training / development opportunity"
    )
    assert s1["Provisional"] == "no" and s1["Feedback meeting"] == "none"
    assert s1["Decision taken"] == "" and s1["Acknowledged at"] == ""
    assert s1["Finalised"] == "no" and s1["Finalised at"] == "" and s1["Live differs"] == "no"
    assert s1["Calendar"] == "cn-2026"
    s2 = dict(zip(EN_HEADERS, table[2], strict=True))
    assert s2["Name"] == "王芳" and s2["Resolution rate value"] == "0.8"
    assert s2["Resolution rate grade"] == "unqualified" and s2["Overall grade"] == "unqualified"

    zh = await client.get("/v1/appraisals/2026Q3?team=north&format=csv&lang=zh-CN", headers=ADMIN)
    zh_table = list(csv.reader(io.StringIO(zh.content.decode("utf-8-sig"))))
    assert zh_table[0][:6] == [
        "专员编号",
        "姓名",
        "团队",
        "季度",
        "客户满意度数值",
        "客户满意度等级",
    ]
    zh_s2 = dict(zip(zh_table[0], zh_table[2], strict=True))
    assert zh_table[0][19:] == ["综合等级", "建议激励", "已定稿", "定稿时间", "与实时数据不一致",
                                "工作日历", "暂定", "反馈面谈", "激励决定", "决定金额", "决定级别",
                                "决定人", "决定时间", "专员确认时间"]  # fmt: skip
    assert zh_s2["姓名"] == "王芳" and zh_s2["综合等级"] == "不合格"
    assert zh_s2["建议激励"] == "制定改进计划; 辅导"
    assert zh_s2["已定稿"] == "否" and zh_s2["反馈面谈"] == "未安排"


async def test_xlsx_export_read_back_cell_by_cell(
    client: AsyncClient, clean_db: AsyncEngine, tmp_path: Path
) -> None:
    await seed_org(clean_db)
    r = await client.post("/v1/appraisals/2026Q3/finalize?team=north", headers=ADMIN)
    assert r.status_code == 200
    r = await client.get("/v1/appraisals/2026Q3?team=north&format=xlsx&lang=en", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats")
    path = tmp_path / "a.xlsx"
    path.write_bytes(r.content)
    wb = load_workbook(path)
    assert wb.sheetnames == ["Appraisal", "Summary"]
    ws = wb["Appraisal"]
    values = [[c.value for c in row] for row in ws.iter_rows()]
    assert values[0] == EN_HEADERS
    assert len(values) == 3
    s1 = dict(zip(EN_HEADERS, values[1], strict=True))
    assert s1["Specialist ID"] == "s1" and s1["Customer satisfaction value"] == 0.95
    assert s1["Avg response time (h) value"] == 5.0 and s1["Training sessions value"] == 1
    assert s1["Collaboration value"] is None and s1["NPS value"] is None
    assert s1["Overall grade"] == "excellent" and s1["Finalised"] == "yes"
    assert str(s1["Finalised at"]).startswith("2026-10-05 02:00:00")
    s2 = dict(zip(EN_HEADERS, values[2], strict=True))
    assert s2["Resolution rate value"] == 0.8 and s2["Overall grade"] == "unqualified"

    def fill(row: int, header: str) -> str:
        cell = ws.cell(row=row, column=EN_HEADERS.index(header) + 1)
        return str(cell.fill.fgColor.rgb)[-6:] if cell.fill.fill_type == "solid" else "none"

    assert fill(2, "Customer satisfaction grade") == "C6EFCE"  # excellent: green
    assert fill(2, "Training sessions grade") == "DDEBF7"  # qualified: blue
    assert fill(2, "Collaboration grade") == "E7E6E6"  # insufficient data: grey
    assert fill(3, "Resolution rate grade") == "FFC7CE"  # unqualified: red
    assert fill(3, "Overall grade") == "FFC7CE"
    assert fill(2, "Name") == "none" and fill(1, "Overall grade") == "none"
    assert ws.cell(row=1, column=1).font.b is True

    summary = [[c.value for c in row] for row in wb["Summary"].iter_rows()]
    assert summary[0] == ["Quarter", "2026Q3"] + [None] * 3
    assert summary[1][:2] == ["Teams", "north"] and summary[2][:2] == ["Calendar", "cn-2026"]
    assert summary[3][:2] == ["Specialists", 2]
    assert summary[5] == ["Overall grade", "excellent", "qualified", "unqualified",
                          "insufficient data"]  # fmt: skip
    assert summary[6] == [None, 1, 0, 1, 0]
    per_kpi = {row[0]: row[1:] for row in summary[9:]}
    assert per_kpi["Resolution rate"] == [1, 0, 1, 0]
    assert per_kpi["Training sessions"] == [0, 1, 1, 0]
    assert per_kpi["Collaboration"] == [0, 0, 0, 2]
    assert "NPS" not in per_kpi

    zh = await client.get("/v1/appraisals/2026Q3?team=north&format=xlsx", headers=ADMIN)
    zh_path = tmp_path / "zh.xlsx"
    zh_path.write_bytes(zh.content)
    zh_wb = load_workbook(zh_path)
    assert zh_wb.sheetnames == ["季度考核", "汇总"]
    assert zh_wb["季度考核"].cell(row=3, column=2).value == "王芳"
    assert zh_wb["季度考核"].cell(row=1, column=20).value == "综合等级"
    assert zh_wb["季度考核"].cell(row=3, column=20).value == "不合格"


async def test_large_team_streams_in_chunks(client: AsyncClient, clean_db: AsyncEngine) -> None:
    """More members than one chunk (500): every one comes out once, in id order."""
    n = 1203
    ids = [f"m{i:05d}" for i in range(n)]
    await seed_directory(clean_db, [("big", "Big", None)], [(i, None, "big") for i in ids])
    await seed_daily(clean_db, [(i, Q3, "customer_satisfaction", 10.0, 10) for i in ids[::7]])
    r = await client.get("/v1/appraisals/2026Q3?team=big&format=csv&lang=en", headers=ADMIN)
    table = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [row[0] for row in table[1:]] == ids
    graded = [row[4] for row in table[1:]]
    assert graded.count("1.0") == len(ids[::7])
