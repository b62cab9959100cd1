"""The appraisal cycle and the specialist role over the real HTTP app and PostgreSQL: every new
route as each caller (specialist own / other, supervisor own team / other team, admin,
service), meetings, acknowledgements, comments, decisions, progress notes, preview, the team
view, exports, and odd text in every free-text field."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from migrations import alembic_config, upgrade
from services.scoring.api.schemas import DashboardConfig
from services.scoring.appraisal.domain import parse_incentives
from services.scoring.appraisal.schemas import (
    Acknowledgement,
    Appraisal,
    CommentOut,
    Decision,
    DecisionHistory,
    FinalizePreview,
    FinalizeResult,
    Meeting,
    MeetingList,
    Plan,
    ProgressNote,
    TeamCycle,
)
from services.scoring.db import asyncpg_dsn
from shared.auth import Role
from shared.embedded import EmbeddedPostgres
from tests.integration.test_appraisal_api import ADMIN, NOW, app, seed_org
from tests.integration.test_scoring_api import token

__all__ = ["app"]  # the module-scoped app fixture, shared with test_appraisal_api

Q3 = "2026Q3"
S1 = "/v1/specialists/s1"
CALLERS = ("spec_own", "spec_other", "sup_own", "sup_other", "admin", "service")


@pytest.fixture
async def client(app: FastAPI, clean_db: AsyncEngine) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://scoring") as c:
        yield c
    app.state.clock = lambda: NOW


@pytest.fixture
async def who(
    clean_db: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> dict[str, dict[str, str]]:
    """Each caller's headers; the org: north (ann) has s1 and s2, south (bob) has s3."""
    await seed_org(clean_db)
    return {
        "spec_own": await token(sessionmaker, Role.SPECIALIST, "s1"),
        "spec_other": await token(sessionmaker, Role.SPECIALIST, "s2"),  # a colleague
        "sup_own": await token(sessionmaker, Role.SUPERVISOR, "ann"),  # supervises north
        "sup_other": await token(sessionmaker, Role.SUPERVISOR, "bob", ["south"]),
        "admin": ADMIN,
        "service": await token(sessionmaker, Role.SERVICE, "zendesk"),
    }


async def finalize_north(client: AsyncClient) -> dict[str, Any]:
    r = await client.post(f"/v1/appraisals/{Q3}/finalize?team=north", headers=ADMIN)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def held_meeting(client: AsyncClient, **extra: Any) -> dict[str, Any]:
    body = {"quarter": Q3, "held_on": "2026-10-04", "participants": ["ann", "s1"],
            "notes": "回顾", "agreed_actions": ["每周复盘"], **extra}  # fmt: skip
    r = await client.post(f"{S1}/meetings", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    return dict(r.json())


def same_404(a: Any, b: Any, real: str, ghost: str) -> bool:
    return bool(
        a.status_code == b.status_code == 404
        and a.text.replace(real, "{id}") == b.text.replace(ghost, "{id}")
    )


# ---------------------------------------------------------------------------
# The specialist role
# ---------------------------------------------------------------------------

OWN_READS = [
    "/kpis",
    "/kpis/resolution_rate/history",
    "/kpis/resolution_rate/events",
    "",
    f"/appraisals/{Q3}",
    "/meetings",
    f"/appraisals/{Q3}/decisions",
]
TEAM_ROUTES = [
    ("GET", "/v1/teams/north/kpis"),
    ("GET", "/v1/leaderboard?kpi=nps"),
    ("GET", "/v1/teams"),
    ("GET", "/v1/teams/north"),
    ("GET", "/v1/specialists"),
    ("GET", f"/v1/appraisals/{Q3}"),
    ("GET", f"/v1/appraisals/{Q3}?format=csv"),
    ("GET", f"/v1/appraisals/{Q3}/cycle"),
    ("GET", f"/v1/appraisals/{Q3}/finalize/preview"),
    ("POST", f"/v1/appraisals/{Q3}/finalize"),
    ("GET", "/v1/plans"),
    ("GET", "/v1/platform/health"),
    ("GET", "/v1/dashboard/overview"),
    ("GET", "/v1/dashboard/notify/alerts"),
    ("PUT", "/v1/teams/north"),
    ("PUT", S1),
]


async def test_a_specialist_reads_their_own_and_nothing_else(
    client: AsyncClient, who: dict[str, dict[str, str]]
) -> None:
    me = who["spec_own"]
    plan = {"goals": [{"kpi": "resolution_rate", "target": 0.9, "due": "2026-12-31"}]}
    assert (await client.put(f"{S1}/plans/2026Q4", json=plan, headers=ADMIN)).status_code == 200
    for tail in [*OWN_READS, "/plans/2026Q4"]:
        mine = await client.get(S1 + tail, headers=me)
        assert mine.status_code == 200, (tail, mine.text)
        # A colleague in the same team and an id nobody has answer alike.
        colleague = await client.get("/v1/specialists/s2" + tail, headers=me)
        ghost = await client.get("/v1/specialists/nobody" + tail, headers=me)
        assert same_404(colleague, ghost, "s2", "nobody"), (tail, colleague.text, ghost.text)
        far = await client.get("/v1/specialists/s3" + tail, headers=me)
        assert same_404(far, ghost, "s3", "nobody"), tail
    body = (await client.get(f"{S1}/appraisals/{Q3}", headers=me)).json()
    Appraisal.model_validate(body)
    assert body["specialist_id"] == "s1" and body["provisional"] is False
    # Their team's name, which they may not read from the team route, is on their entry.
    entry = (await client.get(S1, headers=me)).json()
    assert entry["team_id"] == "north" and entry["team_name"]
    config = (await client.get("/v1/dashboard/config", headers=me)).json()
    DashboardConfig.model_validate(config)
    assert config["role"] == "specialist" and config["specialist_id"] == "s1"
    assert config["team_ids"] == [] and config["features"]["appraisal_cycle"] is True
    who_am_i = (await client.get("/v1/whoami", headers=me)).json()
    assert who_am_i["role"] == "specialist"
    for method, url in TEAM_ROUTES:
        r = await client.request(method, url, headers=me, json={"name": "x"})
        assert r.status_code == 403, (method, url, r.status_code, r.text)
        assert "specialist" in r.text
    # Writes that are the supervisor's: 403 by role, before the id or the body is looked at.
    writes = [
        ("POST", f"{S1}/meetings", {"held_on": "2026-10-04", "participants": ["s1"]}),
        ("PUT", f"{S1}/plans/2026Q4", plan),
        ("POST", f"{S1}/plans/2026Q4/status", {"status": "open"}),
        ("PUT", f"{S1}/appraisals/{Q3}/decision", {"type": "none"}),
        ("PATCH", f"{S1}/meetings/1", {"notes": "mine now"}),
        ("PUT", f"{S1}/appraisals/{Q3}/decision", {"type": "\x00"}),
    ]
    for method, url, payload in writes:
        r = await client.request(method, url, json=payload, headers=me)
        assert r.status_code == 403, (method, url, r.text)


# ---------------------------------------------------------------------------
# Every new route, every caller
# ---------------------------------------------------------------------------

SCOPED = {"spec_own": 403, "spec_other": 403, "sup_own": 200, "sup_other": 404,
          "admin": 200, "service": 403}  # fmt: skip
MINE = {**SCOPED, "spec_own": 200, "spec_other": 404}
SELF_ONLY = {"spec_own": 200, "spec_other": 404, "sup_own": 403, "sup_other": 403,
             "admin": 403, "service": 403}  # fmt: skip
TEAM = {"spec_own": 403, "spec_other": 403, "sup_own": 200, "sup_other": 404,
        "admin": 200, "service": 403}  # fmt: skip


async def test_each_new_route_answers_each_caller(
    client: AsyncClient, who: dict[str, dict[str, str]]
) -> None:
    await finalize_north(client)
    meeting = await held_meeting(client)
    mid = meeting["id"]
    goal = {"goals": [{"kpi": "resolution_rate", "target": 0.9, "due": "2026-12-31"}]}
    assert (await client.put(f"{S1}/plans/2026Q4", json=goal, headers=ADMIN)).status_code == 200
    meeting_body = {"quarter": Q3, "held_on": "2026-10-04", "participants": ["ann"],
                    "notes": "put", "agreed_actions": ["a"]}  # fmt: skip
    routes: list[tuple[str, str, Any, dict[str, int]]] = [
        ("GET", f"/v1/appraisals/{Q3}/finalize/preview?team=north", None, TEAM),
        ("POST", f"/v1/appraisals/{Q3}/finalize?team=north", None, TEAM),
        ("GET", f"/v1/appraisals/{Q3}/cycle?team=north", None, TEAM),
        ("GET", f"{S1}/appraisals/{Q3}", None, MINE),
        ("GET", f"{S1}/meetings", None, MINE),
        ("POST", f"{S1}/meetings", meeting_body, {**SCOPED, "sup_own": 201, "admin": 201}),
        ("PUT", f"{S1}/meetings/{mid}", meeting_body, SCOPED),
        ("PATCH", f"{S1}/meetings/{mid}", {"notes": "patched"}, SCOPED),
        ("POST", f"{S1}/meetings/{mid}/acknowledge", None, SELF_ONLY),
        ("POST", f"{S1}/appraisals/{Q3}/acknowledge", None, SELF_ONLY),
        ("PUT", f"{S1}/appraisals/{Q3}/comment", {"text": "同意"}, SELF_ONLY),
        ("PUT", f"{S1}/appraisals/{Q3}/decision", {"type": "recognition"}, SCOPED),
        ("GET", f"{S1}/appraisals/{Q3}/decisions", None, MINE),
        ("GET", f"{S1}/plans/2026Q4", None, MINE),
        ("POST", f"{S1}/plans/2026Q4/notes", {"text": "进展"},
         {**MINE, "spec_own": 201, "sup_own": 201, "admin": 201}),
        ("PUT", f"{S1}/plans/2026Q4", goal, SCOPED),
        ("POST", f"{S1}/plans/2026Q4/status", {"status": "open"}, SCOPED),
    ]  # fmt: skip
    wrong = []
    for method, url, body, expect in routes:
        for caller in CALLERS:
            r = await client.request(method, url, json=body, headers=who[caller])
            if r.status_code != expect[caller]:
                wrong.append(f"{method} {url} as {caller}: {r.status_code} {r.text[:120]}")
    assert not wrong, "\n".join(wrong)


# ---------------------------------------------------------------------------
# Meetings
# ---------------------------------------------------------------------------


async def test_a_meeting_is_scheduled_held_acknowledged_and_corrected(
    client: AsyncClient, who: dict[str, dict[str, str]], app: FastAPI
) -> None:
    ann, me = who["sup_own"], who["spec_own"]
    body = {"status": "scheduled", "quarter": "2026q3",
            "scheduled_for": "2026-10-09T16:30:00+00:00", "participants": ["ann", "s1"],
            "notes": "议程：Q3 回顾"}  # fmt: skip
    r = await client.post(f"{S1}/meetings", json=body, headers=ann)
    assert r.status_code == 201, r.text
    made = Meeting.model_validate(r.json())
    # 16:30 UTC is the next morning in Shanghai: the meeting's date is the local one.
    assert made.status == "scheduled" and made.quarter == Q3 and made.date == dt.date(2026, 10, 10)
    assert made.held_on is None and made.created_by == "ann" and made.acknowledged_at is None
    url = f"{S1}/meetings/{made.id}"

    r = await client.post(url + "/acknowledge", headers=me)
    assert r.status_code == 409 and "held" in r.text  # nothing held to acknowledge yet
    r = await client.patch(url, json={"status": "held"}, headers=ann)
    assert r.status_code == 422 and "held_on" in r.text
    r = await client.patch(url, json={"agreed_actions": ["x"]}, headers=ann)
    assert r.status_code == 422 and "agreed_actions" in r.text
    r = await client.patch(url, json={"scheduled_for": "2026-10-09T16:30:00"}, headers=ann)
    assert r.status_code == 422 and "scheduled_for" in r.text  # no offset
    app.state.clock = lambda: NOW + dt.timedelta(days=5)
    held = {"status": "held", "held_on": "2026-10-10", "notes": "已面谈",
            "agreed_actions": ["每周复盘未解决工单", "跟进回访"]}  # fmt: skip
    r = await client.patch(url, json=held, headers=ann)
    assert r.status_code == 200, r.text
    done = Meeting.model_validate(r.json())
    assert done.status == "held" and done.held_on == dt.date(2026, 10, 10)
    assert done.agreed_actions == ["每周复盘未解决工单", "跟进回访"]
    assert done.participants == ["ann", "s1"]  # untouched by the PATCH
    assert done.updated_by == "ann" and done.updated_at == NOW + dt.timedelta(days=5)

    app.state.clock = lambda: NOW + dt.timedelta(days=6)
    r = await client.post(url + "/acknowledge", headers=me)
    assert r.status_code == 200
    first = r.json()["acknowledged_at"]
    assert first.startswith("2026-10-11T02:00:00")
    app.state.clock = lambda: NOW + dt.timedelta(days=7)
    again = (await client.post(url + "/acknowledge", headers=me)).json()["acknowledged_at"]
    assert again == first  # the first acknowledgement is the one kept

    # Linking it to another quarter does not change what was read; a note does.
    r = await client.patch(url, json={"quarter": "2026Q2"}, headers=ann)
    assert r.json()["acknowledged_at"] == first
    r = await client.patch(url, json={"quarter": Q3, "notes": "已面谈（更正）"}, headers=ann)
    assert r.json()["acknowledged_at"] is None

    r = await client.patch(url, json={"status": "cancelled"}, headers=ann)
    assert r.status_code == 409 and "'held' to 'cancelled'" in r.text
    r = await client.put(url, json={**held, "participants": ["ann"], "date": "2026-10-11"},
                         headers=ann)  # fmt: skip
    assert r.status_code == 422 and "date" in r.text  # date and held_on differ
    # PUT replaces every field: what it does not send is the default (notes "", no actions).
    r = await client.put(
        url, json={"quarter": Q3, "held_on": "2026-10-11", "participants": ["ann"]}, headers=ann
    )
    assert r.status_code == 200 and r.json()["notes"] == "" and r.json()["agreed_actions"] == []
    listed = (await client.get(f"{S1}/meetings?quarter={Q3}", headers=me)).json()
    MeetingList.model_validate(listed)
    assert [m["id"] for m in listed["meetings"]] == [made.id]

    # The meeting belongs to s1: under s2's path it does not exist.
    r = await client.patch(f"/v1/specialists/s2/meetings/{made.id}", json={}, headers=ann)
    assert r.status_code == 404 and "meeting" in r.text
    r = await client.patch(url, json={"notes": "x"}, headers=who["sup_other"])
    assert r.status_code == 404 and "specialist" in r.text
    bad = [
        ({"status": "cancelled", "participants": ["ann"]}, "status"),  # not a new meeting's
        ({"status": "scheduled", "participants": ["ann"]}, "scheduled_for"),
        ({"status": "scheduled", "date": "2026-10-04", "participants": ["ann"]}, "date"),
        ({"participants": ["ann"]}, "held_on"),
        ({"held_on": "2026-10-04", "participants": []}, "participants"),
        ({"held_on": "2026-10-04", "participants": ["ann"], "agreed_actions": [" "]},
         "agreed_actions[0]"),
        ({"held_on": "2026-10-04", "participants": ["ann"], "quarter": "2026Q9"}, "quarter"),
    ]  # fmt: skip
    for payload, field in bad:
        r = await client.post(f"{S1}/meetings", json=payload, headers=ann)
        assert r.status_code == 422 and field in r.text, (payload, r.text)
    legacy = {"date": "2026-10-04", "participants": ["ann"], "notes": "old clients"}
    r = await client.post(f"{S1}/meetings", json=legacy, headers=ann)
    assert r.status_code == 201 and r.json()["status"] == "held"
    assert r.json()["held_on"] == r.json()["date"] == "2026-10-04"


# ---------------------------------------------------------------------------
# Acknowledgement, comment, decisions
# ---------------------------------------------------------------------------


async def test_acknowledge_comment_and_decide_once_finalised(
    client: AsyncClient, who: dict[str, dict[str, str]], app: FastAPI
) -> None:
    ann, me = who["sup_own"], who["spec_own"]
    ack, comment = f"{S1}/appraisals/{Q3}/acknowledge", f"{S1}/appraisals/{Q3}/comment"
    decision = f"{S1}/appraisals/{Q3}/decision"
    r = await client.post(ack, headers=me)
    assert r.status_code == 409 and "finalised" in r.text
    assert (await client.put(comment, json={"text": "x"}, headers=me)).status_code == 409
    assert (await client.put(decision, json={"type": "none"}, headers=ann)).status_code == 409
    before = (await client.get(f"{S1}/appraisals/{Q3}", headers=me)).json()
    assert before["acknowledged_at"] is None and before["comment"] is None
    await finalize_north(client)

    r = await client.post(ack, headers=me)
    assert r.status_code == 200
    got = Acknowledgement.model_validate(r.json())
    assert got.acknowledged_at == NOW
    app.state.clock = lambda: NOW + dt.timedelta(hours=1)
    assert (await client.post(ack, headers=me)).json()["acknowledged_at"] == r.json()[
        "acknowledged_at"
    ]

    r = await client.put(comment, json={"text": "感谢反馈，Q4 会改进回访。"}, headers=me)
    assert r.status_code == 200
    CommentOut.model_validate(r.json())
    app.state.clock = lambda: NOW + dt.timedelta(hours=2)
    r = await client.put(comment, json={"text": "更正：Q4 每周回访。"}, headers=me)
    c = r.json()["comment"]
    assert c["text"] == "更正：Q4 每周回访。"
    assert c["commented_at"].startswith("2026-10-05T03:00") and c["updated_at"].startswith(
        "2026-10-05T04:00"
    )
    assert (await client.put(comment, json={"text": ""}, headers=me)).status_code == 422

    r = await client.put(
        decision,
        json={"type": "pay_adjustment_candidate", "amount": 800, "level": "+5%",
              "note": "按季度考核优秀调薪"},
        headers=ann,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    first = Decision.model_validate(r.json())
    assert first.decided_by == "ann" and first.labels == {"en": "pay adjustment", "zh-CN": "调薪"}
    assert first.amount == 800 and first.level == "+5%"
    app.state.clock = lambda: NOW + dt.timedelta(hours=3)
    r = await client.put(decision, json={"type": "none", "note": "预算冻结"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["labels"]["zh-CN"] == "不采取措施"
    history = (await client.get(f"{S1}/appraisals/{Q3}/decisions", headers=me)).json()
    DecisionHistory.model_validate(history)
    assert history["current"]["type"] == "none" and history["current"]["decided_by"] == (
        "bootstrap-admin"
    )
    assert [d["type"] for d in history["history"]] == ["none", "pay_adjustment_candidate"]
    assert history["suggested"][0] == "recognition"
    bad = [
        ({"type": "big_bonus"}, "type"),
        ({"type": ""}, "type"),
        ({"type": "recognition", "amount": 1e13}, "amount"),
        ({"type": "recognition", "amount": "lots"}, "amount"),
        ({"type": "recognition", "level": "x" * 201}, "level"),
        ({"type": "recognition", "extra": 1}, "extra"),
    ]
    for payload, field in bad:
        r = await client.put(decision, json=payload, headers=ann)
        assert r.status_code == 422 and field in r.text, (payload, r.text)
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        r = await client.put(
            decision,
            content=b'{"type": "recognition", "amount": ' + literal + b"}",
            headers={**ann, "Content-Type": "application/json"},
        )
        assert r.status_code == 422 and "amount" in r.text, literal

    body = (await client.get(f"{S1}/appraisals/{Q3}", headers=me)).json()
    Appraisal.model_validate(body)
    assert body["finalized"] is True and body["provisional"] is False
    assert body["acknowledged_at"].startswith("2026-10-05T02:00:00")
    assert body["comment"]["text"] == "更正：Q4 每周回访。"
    assert body["decision"]["type"] == "none"
    # s2's appraisal knows nothing of s1's.
    s2 = (await client.get(f"/v1/specialists/s2/appraisals/{Q3}", headers=ADMIN)).json()
    assert s2["acknowledged_at"] is None and s2["decision"] is None


async def test_a_specific_incentive_code_from_the_settings_is_a_decision_type(
    client: AsyncClient, who: dict[str, dict[str, str]], app: FastAPI
) -> None:
    await finalize_north(client)
    decision = f"{S1}/appraisals/{Q3}/decision"
    r = await client.put(decision, json={"type": "thank_you_note"}, headers=ADMIN)
    assert r.status_code == 422 and "thank_you_note" in r.text

    async def offered() -> list[str]:
        r = await client.get(f"{S1}/appraisals/{Q3}/decisions", headers=ADMIN)
        return [t.code for t in DecisionHistory.model_validate(r.json()).types]

    assert "thank_you_note" not in await offered() and (await offered())[-1] == "none"
    config = app.state.config
    # A code for a grade s1 did not get: still a type the dashboard must offer.
    custom = parse_incentives({"unqualified": ["thank_you_note"]})  # as KPI_INCENTIVES would
    app.state.config = replace(config, incentives=custom)
    try:
        assert "thank_you_note" in await offered()
        r = await client.put(decision, json={"type": "thank_you_note"}, headers=ADMIN)
        assert r.status_code == 200 and r.json()["labels"]["en"] == "thank_you_note"
    finally:
        app.state.config = config


# ---------------------------------------------------------------------------
# Plans: goals by supervisors, progress notes by the specialist too
# ---------------------------------------------------------------------------


async def test_progress_notes_on_a_plan(
    client: AsyncClient, who: dict[str, dict[str, str]], app: FastAPI
) -> None:
    ann, me = who["sup_own"], who["spec_own"]
    url = f"{S1}/plans/2026Q4"
    r = await client.post(url + "/notes", json={"text": "x"}, headers=me)
    assert r.status_code == 404 and "no improvement plan" in r.text
    goal = {"goals": [{"kpi": "resolution_rate", "target": 0.9, "due": "2026-12-31"}]}
    assert (await client.put(url, json=goal, headers=ann)).status_code == 200
    r = await client.post(url + "/notes", json={"text": "本周回访 12 单"}, headers=me)
    assert r.status_code == 201
    note = ProgressNote.model_validate(r.json())
    assert note.author == "s1" and note.author_role == "specialist" and note.created_at == NOW
    app.state.clock = lambda: NOW + dt.timedelta(days=1)
    r = await client.post(url + "/notes", json={"text": "已确认"}, headers=ann)
    assert r.status_code == 201 and r.json()["author_role"] == "supervisor"
    plan = Plan.model_validate((await client.get(url, headers=me)).json())
    assert [(n.author, n.text) for n in plan.progress_notes] == [
        ("s1", "本周回访 12 单"),
        ("ann", "已确认"),
    ]
    # The goals are the supervisor's: unchanged by the notes, not the specialist's to set.
    assert [g.kpi for g in plan.goals] == ["resolution_rate"]
    assert (await client.put(url, json={"goals": []}, headers=me)).status_code == 403
    r = await client.post(url + "/notes", json={"text": "x"}, headers=who["spec_other"])
    assert r.status_code == 404
    listed = (await client.get("/v1/plans?quarter=2026Q4", headers=ann)).json()["plans"]
    assert [len(p["progress_notes"]) for p in listed] == [2]


# ---------------------------------------------------------------------------
# Finalisation preview, supervisors finalising, the team's cycle view
# ---------------------------------------------------------------------------


async def test_the_preview_shows_what_finalising_then_does(
    client: AsyncClient, who: dict[str, dict[str, str]]
) -> None:
    ann = who["sup_own"]
    url = f"/v1/appraisals/{Q3}/finalize"
    r = await client.get(url + "/preview?team=north", headers=ann)
    assert r.status_code == 200, r.text
    preview = FinalizePreview.model_validate(r.json())
    assert preview.can_finalize and preview.reason is None and preview.plan_quarter == "2026Q4"
    assert [(e.specialist_id, e.overall_grade, e.plan_proposed) for e in preview.freeze] == [
        ("s1", "excellent", False),
        ("s2", "unqualified", True),
    ]
    assert preview.freeze[1].incentive == ["improvement_plan", "coaching"]
    assert preview.plans_proposed == ["s2"] and preview.already_finalized == []
    # A preview writes nothing.
    still = (await client.get(f"/v1/specialists/s1/appraisals/{Q3}", headers=ann)).json()
    assert still["finalized"] is False
    assert (await client.get("/v1/specialists/s2/plans/2026Q4", headers=ann)).status_code == 404

    # The supervisor finalises her teams (no team given: each of hers, recorded per team).
    r = await client.post(url, headers=ann)
    assert r.status_code == 200, r.text
    done = FinalizeResult.model_validate(r.json())
    assert done.frozen == len(preview.freeze) and done.plans_proposed == preview.plans_proposed
    assert done.finalized_by == "ann"
    team = (await client.get(f"/v1/appraisals/{Q3}?team=north", headers=ADMIN)).json()
    assert [(f["team_id"], f["frozen"]) for f in team["finalizations"]] == [("north", 2)]
    after = (await client.get(url + "/preview?team=north", headers=ann)).json()
    assert after["freeze"] == [] and after["already_finalized"] == ["s1", "s2"]
    south = (await client.get(url + "/preview?team=south", headers=ADMIN)).json()
    assert [e["specialist_id"] for e in south["freeze"]] == ["s3"]
    assert (await client.get(url + "/preview?team=south", headers=ann)).status_code == 404
    assert (await client.get(url + "/preview?team=ghost", headers=ADMIN)).status_code == 404

    q4 = (await client.get("/v1/appraisals/2026Q4/finalize/preview", headers=ADMIN)).json()
    assert q4["can_finalize"] is False and "not over" in q4["reason"]
    assert (await client.post("/v1/appraisals/2026Q4/finalize", headers=ann)).status_code == 409


async def test_the_team_cycle_view(client: AsyncClient, who: dict[str, dict[str, str]]) -> None:
    ann = who["sup_own"]
    url = f"/v1/appraisals/{Q3}/cycle?team=north"
    r = await client.get(url, headers=ann)
    assert r.status_code == 200, r.text
    fresh = TeamCycle.model_validate(r.json())
    assert [e.missing for e in fresh.entries] == [
        ["finalized", "meeting_held", "decision", "acknowledged"]
    ] * 2
    await finalize_north(client)
    await held_meeting(client)
    r = await client.post("/v1/specialists/s2/meetings", headers=ann, json={
        "status": "scheduled", "quarter": Q3, "scheduled_for": "2026-10-20T02:00:00Z",
        "participants": ["ann", "s2"]})  # fmt: skip
    assert r.status_code == 201
    await client.put(f"{S1}/appraisals/{Q3}/decision", json={"type": "recognition"}, headers=ann)
    await client.post(f"{S1}/appraisals/{Q3}/acknowledge", headers=who["spec_own"])
    view = TeamCycle.model_validate((await client.get(url, headers=ann)).json())
    assert view.plan_quarter == "2026Q4"
    assert view.missing_meeting == ["s2"] and view.missing_decision == ["s2"]
    assert view.summary.model_dump() == {"specialists": 2, "finalized": 2, "meetings_held": 1,
                                         "decisions": 1, "acknowledged": 1}  # fmt: skip
    s1, s2 = view.entries
    assert s1.missing == [] and s1.meeting_status == "held" and s1.decision is not None
    assert s2.meeting_status == "scheduled" and s2.meeting_date == dt.date(2026, 10, 20)
    assert s2.plan_status == "draft" and s2.missing == ["meeting_held", "decision", "acknowledged"]
    everyone = (await client.get(f"/v1/appraisals/{Q3}/cycle", headers=ADMIN)).json()
    assert [e["specialist_id"] for e in everyone["entries"]] == ["s1", "s2", "s3"]
    assert (await client.get(url, headers=who["sup_other"])).status_code == 404


async def test_exports_carry_the_cycle(client: AsyncClient, who: dict[str, dict[str, str]]) -> None:
    await finalize_north(client)
    await held_meeting(client)
    await client.put(
        f"{S1}/appraisals/{Q3}/decision",
        json={"type": "pay_adjustment_candidate", "amount": 800.5, "level": "=1+1"},
        headers=who["sup_own"],
    )
    await client.post(f"{S1}/appraisals/{Q3}/acknowledge", headers=who["spec_own"])
    r = await client.get(f"/v1/appraisals/{Q3}?team=north&format=csv&lang=en", headers=ADMIN)
    table = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    s1 = dict(zip(table[0], table[1], strict=True))
    assert s1["Feedback meeting"] == "held" and s1["Decision taken"] == "pay adjustment"
    assert s1["Decision amount"] == "800.5" and s1["Decision level"] == "'=1+1"  # no formula
    assert s1["Decided by"] == "ann" and s1["Decided at"].startswith("2026-10-05 02:00:00")
    assert s1["Acknowledged at"].startswith("2026-10-05 02:00:00")
    assert s1["Provisional"] == "no"
    s2 = dict(zip(table[0], table[2], strict=True))
    assert s2["Feedback meeting"] == "none" and s2["Decision taken"] == ""
    assert s2["Acknowledged at"] == ""
    zh = await client.get(f"/v1/appraisals/{Q3}?team=north&format=csv", headers=ADMIN)
    zh_table = list(csv.reader(io.StringIO(zh.content.decode("utf-8-sig"))))
    zh_s1 = dict(zip(zh_table[0], zh_table[1], strict=True))
    assert zh_s1["反馈面谈"] == "已面谈" and zh_s1["激励决定"] == "调薪"
    xlsx = await client.get(f"/v1/appraisals/{Q3}?team=north&format=xlsx&lang=en", headers=ADMIN)
    assert xlsx.status_code == 200 and xlsx.content.startswith(b"PK")


# ---------------------------------------------------------------------------
# Odd text in every free-text field
# ---------------------------------------------------------------------------

ODD_KEPT = ["李伟：客户回访率 0.8 → 0.9 ✅", "مرحبا‎ RTL", "tab\tand\nnewline", "\x07bell",
            "e\u0301 combining, zero\u200bwidth", "=HYPERLINK(\"x\")", "💬" * 100]  # fmt: skip


def read_back(body: dict[str, Any], field: str) -> Any:
    # PUT .../comment answers {"comment": {"text": ...}}; the others carry the field itself.
    return body["comment"]["text"] if "comment" in body else body[field]


def raw_json(payload: dict[str, Any], field: str, literal: str) -> bytes:
    """``payload`` as JSON with ``field``'s value spliced in as a raw JSON string literal
    (how a lone surrogate or NUL escape arrives from a client)."""
    text = json.dumps({**payload, field: "@@"})
    return text.replace('"@@"', literal).encode()


async def test_odd_text_is_kept_or_refused_naming_the_field(
    client: AsyncClient, who: dict[str, dict[str, str]]
) -> None:
    ann, me = who["sup_own"], who["spec_own"]
    await finalize_north(client)
    meeting = await held_meeting(client)
    goal = {"goals": [{"kpi": "resolution_rate", "target": 0.9, "due": "2026-12-31"}]}
    assert (await client.put(f"{S1}/plans/2026Q4", json=goal, headers=ann)).status_code == 200
    targets = [
        ("PATCH", f"{S1}/meetings/{meeting['id']}", ann, {}, "notes"),
        ("PUT", f"{S1}/appraisals/{Q3}/comment", me, {}, "text"),
        ("PUT", f"{S1}/appraisals/{Q3}/decision", ann, {"type": "none"}, "note"),
        ("PUT", f"{S1}/appraisals/{Q3}/decision", ann, {"type": "none"}, "level"),
        ("POST", f"{S1}/plans/2026Q4/notes", me, {}, "text"),
    ]
    for method, url, caller, base, field in targets:
        for odd in ODD_KEPT:
            r = await client.request(method, url, json={**base, field: odd}, headers=caller)
            assert r.status_code in (200, 201), (url, field, odd, r.text)
            assert read_back(r.json(), field) == odd, (url, field)
        headers = {**caller, "Content-Type": "application/json"}
        for literal in ('"a\\u0000b"', '"\\ud800"', '"x\\udc00y"'):
            r = await client.request(method, url, content=raw_json(base, field, literal),
                                     headers=headers)  # fmt: skip
            assert r.status_code == 422 and field in r.text, (url, field, literal, r.text)
        huge = "长" * 20001
        r = await client.request(method, url, json={**base, field: huge}, headers=caller)
        assert r.status_code == 422 and field in r.text, (url, field)
    # A list of texts names the item.
    url = f"{S1}/meetings/{meeting['id']}"
    r = await client.patch(url, content=raw_json({}, "agreed_actions", '["ok", "\\u0000"]'),
                           headers={**ann, "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 422 and "agreed_actions" in r.text
    r = await client.patch(url, json={"agreed_actions": ODD_KEPT}, headers=ann)
    assert r.status_code == 200 and r.json()["agreed_actions"] == ODD_KEPT
    r = await client.patch(url, json={"agreed_actions": ["x"] * 51}, headers=ann)
    assert r.status_code == 422 and "agreed_actions" in r.text
    # And what was kept reads back the same, also through the appraisal and the export.
    body = (await client.get(f"{S1}/appraisals/{Q3}", headers=me)).json()
    assert body["comment"]["text"] == ODD_KEPT[-1] and body["decision"]["level"] == ODD_KEPT[-1]
    export = await client.get(f"/v1/appraisals/{Q3}?team=north&format=xlsx", headers=ADMIN)
    assert export.status_code == 200


# ---------------------------------------------------------------------------
# Migration 0013 with data
# ---------------------------------------------------------------------------


def test_migration_0013_keeps_meetings_and_its_downgrade_keeps_tokens(
    pg_server: EmbeddedPostgres,
) -> None:
    """Meetings recorded before are held on their date; a downgrade goes back to the revision
    before, keeping the meetings' records and the tokens (0012 admits specialist tokens)."""
    url = pg_server.create_database(f"kpi_m13_{uuid.uuid4().hex[:8]}")
    dsn = asyncpg_dsn(url)
    before = ScriptDirectory.from_config(alembic_config(url)).get_revision("0013").down_revision
    assert isinstance(before, str)
    upgrade(url, before)

    async def run(*statements: str) -> list[Any]:
        conn = await asyncpg.connect(dsn)
        try:
            return [await conn.fetch(q) for q in statements]
        finally:
            await conn.close()

    token = (
        "INSERT INTO api_tokens (id, token_hash, role, subject, team_ids) VALUES "
        "(gen_random_uuid(), md5(random()::text), 'specialist', 's1', '{}')"
    )
    asyncio.run(
        run(
            "INSERT INTO feedback_meetings (specialist_id, quarter, met_on, participants, notes,"
            " created_by) VALUES ('s1', '2026Q3', '2026-10-04', '[\"ann\"]', '旧记录', 'ann')"
        )
    )
    upgrade(url, "0013")
    (meetings, _) = asyncio.run(
        run(
            "SELECT status, held_on, met_on, agreed_actions::text AS a, acknowledged_at"
            " FROM feedback_meetings",
            token,
        )
    )
    assert [dict(m) for m in meetings] == [
        {"status": "held", "held_on": dt.date(2026, 10, 4), "met_on": dt.date(2026, 10, 4),
         "a": "[]", "acknowledged_at": None}
    ]  # fmt: skip
    with pytest.raises(asyncpg.CheckViolationError):  # a held meeting needs its date
        asyncio.run(run("UPDATE feedback_meetings SET held_on = NULL"))
    command.downgrade(alembic_config(url), before)
    (tokens, meetings) = asyncio.run(
        run("SELECT role FROM api_tokens", "SELECT notes FROM feedback_meetings")
    )
    assert [t["role"] for t in tokens] == ["specialist"]
    assert [m["notes"] for m in meetings] == ["旧记录"]
    upgrade(url)
