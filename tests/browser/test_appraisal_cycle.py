"""The appraisal cycle in headless Chromium against real ingest, scoring and notify processes.

Issue 16's "done when": the admin creates a supervisor's and a specialist's accounts; the
supervisor signs in, finalises last quarter (preview, then confirm), records the feedback
meeting (scheduled, then held), edits the improvement plan and records the decisions; the
cycle panel then shows nobody missing. The specialist signs in, sees only their own page
(another specialist's URL is not found), acknowledges the meeting record and the appraisal,
comments, adds a progress note, without any call answering 403. In English with accounts
(cookie sessions, CSRF on every write) and in Chinese with bearer tokens, with screenshots of
every step.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kpi.stack import ServiceProcess
from shared.auth import Role, issue_token
from shared.db import session_scope
from tests.browser.conftest import StartStack
from tests.browser.support import assert_dashboard_csp, until, watch_csp
from tests.service_helpers import ADMIN_TOKEN, CHROMIUM_ARGS

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

# What the checks read in each language (everything else is found by id and data attributes).
TEXT = {
    "en": {
        "nav_me": "My page",
        "finalised": "Finalised",
        "nobody_missing": "Nobody is missing a held meeting or a decision.",
        "not_found": "Not found.",
        "required": "required",
        "acked": "You acknowledged this appraisal",
        "plan_open": "Open",
    },
    "zh-CN": {
        "nav_me": "我的主页",
        "finalised": "已定稿",
        "nobody_missing": "所有人都已完成反馈面谈并记录了激励决定。",
        "not_found": "未找到。",
        "required": "必填",
        "acked": "你已于",
        "plan_open": "未开始",
    },
}
COMMENT = {
    "en": "I agree; in Q4 I will focus on resolution.",
    "zh-CN": "同意评估结果，下季度重点提高问题解决率。",
}
NOTE = {"en": "Reviewed 3 unresolved tickets this week.", "zh-CN": "本周复盘了3张未解决工单。"}


def last_quarter(today: dt.date) -> tuple[str, dt.date]:
    """The quarter before today's, and its first day."""
    q = (today.month - 1) // 3  # today's quarter, 0-based
    year, q = (today.year, q - 1) if q else (today.year - 1, 3)
    return f"{year}Q{q + 1}", dt.date(year, 3 * q + 1, 1)


def quarter_events(start: dt.date) -> list[dict[str, Any]]:
    """A quarter's work from its first day: s-42 excellent (all resolved, gave a training),
    s-43 unqualified (8 of 10 resolved, no training), so finalising proposes s-43 a plan."""
    out: list[dict[str, Any]] = []

    def at(day: dt.date, hour: int) -> str:
        return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC).isoformat()

    def add(eid: str, kind: str, when: str, **fields: Any) -> None:
        out.append({"event_id": eid, "type": kind, "occurred_at": when, **fields})

    for who, tickets, resolved in (("s-42", 12, 12), ("s-43", 10, 8)):
        for i in range(tickets):
            day = start + dt.timedelta(days=5 + 7 * i)
            t = f"{who}-T{i}"
            add(f"{t}-c", "ticket.created", at(day, 9), ticket_id=t, specialist_id=who)
            add(f"{t}-r", "ticket.first_response", at(day, 11), ticket_id=t, specialist_id=who)
            add(f"{t}-x", "ticket.closed", at(day, 15), ticket_id=t, specialist_id=who,
                resolved=i < resolved)  # fmt: skip
            add(f"{t}-f", "ticket.followup", at(day + dt.timedelta(days=1), 10), ticket_id=t,
                specialist_id=who)  # fmt: skip
            add(f"{t}-s", "survey.csat", at(day + dt.timedelta(days=1), 12), ticket_id=t, score=5)
        for i in range(5):
            add(f"A-{who}-{i}", "record.audited", at(start + dt.timedelta(days=20 + i), 15),
                specialist_id=who, accurate=True)  # fmt: skip
        for i in range(3):
            add(f"P-{who}-{i}", "survey.peer_review", at(start + dt.timedelta(days=30 + i), 15),
                specialist_id=who, reviewer_id=f"peer-{i}", score=5)  # fmt: skip
    for i in range(3):
        add(f"TR-{i}", "survey.training", at(start + dt.timedelta(days=41), 18),
            session_id="TR-1", specialist_id="s-42",
            session_at=at(start + dt.timedelta(days=40), 14), score=5)  # fmt: skip
    return out


# Argon2 parameters that keep the test fast (the defaults take ~0.5 s per sign-in here).
FAST_HASH = {
    "KPI_PASSWORD_TIME_COST": "1",
    "KPI_PASSWORD_MEMORY_KIB": "8192",
    "KPI_PASSWORD_PARALLELISM": "1",
}
ANN_PASSWORD = "ann's passphrase 2026"
WANG_PASSWORD = "王芳的密码足够长了 2026"

# How a person signs in: ("password", username, password) or ("token", token).
Login = tuple[str, ...]


@pytest.mark.parametrize(("lang", "how"), [("en", "password"), ("zh-CN", "token")])
async def test_appraisal_cycle_in_the_browser(
    lang: str,
    how: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    start_stack: StartStack,
    shots: Path,
    chromium: str,
) -> None:
    # A code configured for a grade nobody here gets must still be offered as a decision.
    incentives = '{"excellent": ["recognition", "team_trip"]}'
    procs = await start_stack(
        ["ingest", "notify", "scoring"], KPI_INCENTIVES=incentives, **FAST_HASH
    )
    if how == "password":  # the accounts are made by the admin in the browser
        ann: Login = ("password", "ann", ANN_PASSWORD)
        wang: Login = ("password", "wang.fang", WANG_PASSWORD)
    else:
        async with session_scope(sessionmaker) as session:
            ann = ("token", (await issue_token(session, Role.SUPERVISOR, "ann", ["north"]))[0])
            wang = ("token", (await issue_token(session, Role.SPECIALIST, "s-43"))[0])
    await asyncio.to_thread(journey, lang, chromium, shots, procs, ann, wang)


def seed(scoring: str, ingest: str, http: httpx.Client, quarter: str, start: dt.date) -> None:
    for team, name, supervisor in (("north", "North 华北", "ann"), ("south", "South 华南", None)):
        r = http.put(f"{scoring}/v1/teams/{team}", json={"name": name, "supervisor": supervisor})
        assert r.status_code == 200, r.text
    for sid, name, team in (("s-42", "Li Wei 李伟", "north"), ("s-43", "Wang Fang 王芳", "north"),
                            ("s-50", "Zhao Min 赵敏", "south")):  # fmt: skip
        r = http.put(f"{scoring}/v1/specialists/{sid}", json={"name": name, "team_id": team})
        assert r.status_code == 200, r.text
    r = http.post(f"{ingest}/v1/events", json=quarter_events(start))
    assert r.status_code == 202 and r.json()["rejected"] == 0, r.text

    def scored() -> bool:
        a42 = http.get(f"{scoring}/v1/specialists/s-42/appraisals/{quarter}").json()
        a43 = http.get(f"{scoring}/v1/specialists/s-43/appraisals/{quarter}").json()
        return bool(
            a42["kpis"]["resolution_rate"]["denominator"] == 12
            and a42["basis"]["training_delivered"]
            and a43["kpis"]["resolution_rate"]["denominator"] == 10
            and a43["kpis"]["record_accuracy"]["denominator"] == 5
            and a42["kpis"]["collaboration_score"]["denominator"] == 3
            and a43["kpis"]["collaboration_score"]["denominator"] == 3
        )

    until(scored, 90, "last quarter's events to be scored")
    appraisals = {
        sid: http.get(f"{scoring}/v1/specialists/{sid}/appraisals/{quarter}").json()
        for sid in ("s-42", "s-43")
    }
    grades = {sid: a["overall_grade"] for sid, a in appraisals.items()}
    assert grades == {"s-42": "excellent", "s-43": "unqualified"}, grades


def journey(
    lang: str,
    executable: str,
    shots: Path,
    procs: dict[str, ServiceProcess],
    ann: Login,
    wang: Login,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    scoring, ingest = procs["scoring"].url, procs["ingest"].url
    text = TEXT[lang]
    today = dt.datetime.now(dt.UTC).date()
    quarter, start = last_quarter(today)
    http = httpx.Client(headers=ADMIN, timeout=10)
    seed(scoring, ingest, http, quarter, start)
    n = 0
    for old in shots.glob(f"cycle-{lang}-*.png"):  # this run's steps only, numbered afresh
        old.unlink()

    def shot(page: Any, name: str, full: bool = False) -> None:
        nonlocal n
        n += 1
        if full:  # from the top, so the sticky menu bar is not drawn over the middle
            page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=shots / f"cycle-{lang}-{n:02d}-{name}.png", full_page=full)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        context = browser.new_context(
            viewport={"width": 1400, "height": 900}, locale="en-US" if lang == "en" else "zh-CN"
        )
        page = context.new_page()
        errors: list[str] = []
        refused: list[str] = []  # every 403 the page received, whoever was signed in
        page.on("pageerror", lambda exc: errors.append(f"{exc}\n{exc.stack}"))
        page.on(
            "response",
            lambda r: refused.append(f"{r.request.method} {r.url}") if r.status == 403 else None,
        )
        csp = watch_csp(page)
        page.set_default_timeout(20_000)
        try:
            assert_dashboard_csp(page.goto(scoring + "/"))
            expect(page.locator("html")).to_have_attribute("lang", lang)
            # Every string of the cycle screens exists in both languages.
            keys = page.evaluate(
                "async () => (await import('/ui/js/views/cycle_i18n.js')).STRING_KEYS"
            )
            assert sorted(keys["en"]) == sorted(keys["zh-CN"]), set(keys["en"]) ^ set(keys["zh-CN"])

            if ann[0] == "password":
                admin_part(page, expect, shot)
            supervisor_part(page, expect, shot, ann, quarter, text, lang)
            assert not refused, refused
            specialist_part(page, expect, shot, wang, quarter, text, lang, scoring)
            assert not refused, refused  # the specialist's page never calls what they may not

            # What the browser did is what the API holds.
            cycle = http.get(f"{scoring}/v1/appraisals/{quarter}/cycle?team=north").json()
            entries = {e["specialist_id"]: e for e in cycle["entries"]}
            assert cycle["missing_meeting"] == [] and cycle["missing_decision"] == [], cycle
            assert entries["s-43"]["missing"] == [] and entries["s-43"]["commented"], entries
            assert entries["s-42"]["decision"]["amount"] == 800, entries["s-42"]
            assert entries["s-42"]["decision"]["level"] == "+5%", entries["s-42"]
            plan_q = cycle["plan_quarter"]
            plan = http.get(f"{scoring}/v1/specialists/s-43/plans/{plan_q}").json()
            assert plan["status"] == "open", plan
            assert {g["kpi"] for g in plan["goals"]} >= {"resolution_rate", "followup_rate"}
            followup = next(g for g in plan["goals"] if g["kpi"] == "followup_rate")
            assert followup["target"] == pytest.approx(0.8), followup  # typed in percent
            assert [(x["author"], x["author_role"]) for x in plan["progress_notes"]] == [
                ("s-43", "specialist")
            ]
            s42 = http.get(f"{scoring}/v1/specialists/s-42/meetings?quarter={quarter}").json()
            assert sorted(m["status"] for m in s42["meetings"]) == ["cancelled", "held"], s42
            meetings = http.get(f"{scoring}/v1/specialists/s-43/meetings?quarter={quarter}").json()
            (held,) = meetings["meetings"]
            assert held["status"] == "held" and held["acknowledged_at"], held
            assert held["agreed_actions"] == ["Weekly review of unresolved tickets", "每周复盘"]
            assert held["scheduled_for"] is not None  # it was scheduled first

            # The supervisor sees the acknowledgement and the comment.
            sign_in(page, expect, ann)
            page.goto(f"{scoring}/ui/#/cycle/s-43?quarter={quarter}")
            expect(page.locator("#cy-ack")).to_have_attribute("data-acked", "yes")
            expect(page.locator("#cy-comment")).to_contain_text(COMMENT[lang])
            expect(page.locator("#cy-notes")).to_contain_text(NOTE[lang])
            shot(page, "supervisor-sees-acknowledgement", full=True)
            assert not refused, refused
            assert not errors, errors
            assert not csp, csp
        finally:
            page.screenshot(path=shots / f"cycle-{lang}-99-last.png")
            browser.close()
            http.close()


# Every visible form control has a label (its own <label>, or aria-label).
UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
  .filter((el) => el.getClientRects().length && !el.labels.length && !el.getAttribute('aria-label'))
  .map((el) => el.id || el.name || el.outerHTML.slice(0, 80))"""

# An error answer in the RFC 9457 shape the API is moving to.
PROBLEM = {
    "type": "about:blank",
    "title": "Request validation failed",
    "status": 422,
    "detail": "amount: must be a finite number",
    "errors": [
        {"loc": ["body", "amount"], "field": "amount", "msg": "must be a finite number",
         "type": "value_error"}
    ],
}  # fmt: skip


def assert_labelled(page: Any) -> None:
    missing = page.evaluate(UNLABELLED)
    assert not missing, missing


def sign_in(page: Any, expect: Any, login: Login) -> None:
    if page.locator("#shell").is_visible():
        page.click("#logout")
    if login[0] == "password":
        page.fill("#login-username", login[1])
        page.fill("#login-password", login[2])
        page.click("#signin-form button[type=submit]")
    else:
        page.fill("#login-token", login[1])
        page.click("#login-form button[type=submit]")
    expect(page.locator("#shell")).to_be_visible()


def admin_part(page: Any, expect: Any, shot: Callable[..., None]) -> None:
    """The admin makes the supervisor's and the specialist's accounts (Users & tokens)."""
    sign_in(page, expect, ("token", ADMIN_TOKEN))
    page.click('[data-nav="users"]')
    users = page.locator("#users-table")
    for username, display, role, bound, password in (
        ("ann", "Ann Lee", "supervisor", "north", ANN_PASSWORD),
        ("wang.fang", "Wang Fang 王芳", "specialist", "s-43", WANG_PASSWORD),
    ):
        page.fill("#nu-username", username)
        page.fill("#nu-display", display)
        page.select_option("#nu-role", role)
        page.fill("#nu-teams" if role == "supervisor" else "#nu-specialist", bound)
        page.fill("#nu-password", password)
        page.click("#us-new button[type=submit]")
        expect(users.locator(f'tr[data-user="{username}"]')).to_be_visible()
    shot(page, "admin-created-accounts", full=True)
    page.click("#logout")


def supervisor_part(
    page: Any,
    expect: Any,
    shot: Callable[..., None],
    login: Login,
    quarter: str,
    text: dict[str, str],
    lang: str,
) -> None:
    sign_in(page, expect, login)
    expect(page.locator('a[data-nav="me"]')).to_be_hidden()
    page.click('a[data-nav="appraisal"]')
    page.select_option("#ap-quarter", quarter)
    table = page.locator("#cycle-table")
    expect(table.locator("tbody tr")).to_have_count(2)
    for sid in ("s-42", "s-43"):
        row = table.locator(f'tr[data-sid="{sid}"]')
        expect(row.locator('[data-col="finalized"]')).to_have_attribute("data-state", "pending")
        expect(row.locator('[data-col="meeting"]')).to_have_attribute("data-status", "none")
    shot(page, "cycle-panel-before", full=True)

    # Finalise: the preview names who freezes, their grades, and the plan it proposes.
    page.click("#cy-finalise")
    dialog = page.locator("#cy-preview")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#cy-preview-table tbody tr")).to_have_count(2)
    expect(dialog.locator('tr[data-sid="s-43"]')).to_contain_text(
        "improvement plan" if lang == "en" else "制定改进计划"
    )
    expect(dialog.locator('tr[data-sid="s-42"] .chip')).to_have_class("chip g-excellent")
    shot(page, "finalise-preview")
    dialog.locator("button[type=submit]").click()
    expect(dialog).to_have_count(0)
    expect(page.locator("#cy-status")).to_contain_text(quarter)
    for sid in ("s-42", "s-43"):
        row = table.locator(f'tr[data-sid="{sid}"]')
        expect(row.locator('[data-col="finalized"]')).to_have_attribute("data-state", "final")
        expect(row.locator('[data-col="finalized"]')).to_contain_text(text["finalised"])
    # The filters: both still miss a meeting and a decision.
    page.check("#cy-filter-missing_meeting")
    expect(table.locator("tbody tr")).to_have_count(2)
    shot(page, "finalised-missing-meeting")
    page.check("#cy-filter-all")

    # s-43: the feedback meeting, scheduled first.
    table.locator('tr[data-sid="s-43"] a.btn').click()
    expect(page.locator("#cy-ap")).to_contain_text(text["finalised"])
    # Keyboard: the dialog opens on Enter, Escape closes it and focus returns to its button.
    page.focus("#cy-schedule")
    page.keyboard.press("Enter")
    dlg = page.locator("#cy-meeting-dlg")
    expect(dlg).to_be_visible()
    expect(page.locator("#mt-when")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dlg).to_have_count(0)
    expect(page.locator("#cy-schedule")).to_be_focused()
    page.keyboard.press("Enter")
    expect(dlg).to_be_visible()
    assert_labelled(page)
    # Client-side check: the time is required, named next to its input.
    page.fill("#mt-people", "")
    dlg.locator("button[type=submit]").click()
    expect(page.locator("#mt-when")).to_have_attribute("aria-invalid", "true")
    expect(dlg.locator(".field-msg").first).to_contain_text(text["required"])
    # Server-side check (422 naming participants[0]): shown next to the participants.
    page.fill("#mt-when", f"{dt.date.today() + dt.timedelta(days=1)}T10:00")
    page.fill("#mt-people", "x" * 200)
    dlg.locator("button[type=submit]").click()
    expect(page.locator("#mt-people")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#mt-people")).to_have_attribute(
        "aria-describedby", "mt-people-hint mt-people-msg"
    )
    expect(page.locator("#mt-people-msg")).not_to_be_empty()
    expect(dlg.locator(".form-error")).not_to_be_empty()
    shot(page, "meeting-validation")
    page.fill("#mt-people", "ann, s-43")
    page.fill("#mt-notes", "Review of " + quarter)
    dlg.locator("button[type=submit]").click()
    expect(dlg).to_have_count(0)
    meeting = page.locator("#cy-meetings .cy-meeting")
    expect(meeting).to_have_attribute("data-status", "scheduled")
    shot(page, "meeting-scheduled")

    # ... then held, with agreed actions (keyboard: add one, type, remove the empty one).
    meeting.locator('[data-act="held"]').click()
    expect(dlg).to_be_visible()
    page.fill("#mt-notes", "Resolution 80 % < 90 %: agreed a plan.")
    page.fill("#mt-a-0", "Weekly review of unresolved tickets")
    page.click("#mt-add-action")
    expect(page.locator("#mt-a-1")).to_be_focused()
    page.keyboard.type("每周复盘")
    page.click("#mt-add-action")
    page.locator("#mt-actions li").nth(2).locator("[data-remove]").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#mt-actions li")).to_have_count(2)
    expect(page.locator("#mt-a-1")).to_be_focused()
    assert_labelled(page)
    shot(page, "meeting-held-form")
    dlg.locator("button[type=submit]").click()
    expect(dlg).to_have_count(0)
    expect(meeting).to_have_attribute("data-status", "held")
    expect(meeting).to_contain_text("每周复盘")
    expect(meeting.locator(".cy-ack")).to_have_attribute("data-acked", "no")

    # The draft plan proposed at finalisation: opened, one target corrected, a goal added.
    plan_box = page.locator("#cy-plan")
    expect(plan_box.locator(".cy-plan-status")).to_have_attribute("data-status", "draft")
    page.click("#cy-plan-edit")
    expect(page.locator("#cy-goal-list li")).to_have_count(2)
    page.click("#cy-add-goal")
    expect(page.locator("#gl-kpi-2")).to_be_focused()
    page.select_option("#gl-kpi-2", "followup_rate")
    page.fill("#gl-target-2", "")
    page.select_option("#pl-status", "open")
    page.click("#cy-plan-form button[type=submit]")
    expect(page.locator("#gl-target-2")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#gl-target-2")).to_be_focused()
    page.fill("#gl-target-2", "80")
    expect(page.locator("#gl-target-2")).not_to_have_attribute("aria-invalid", "true")
    page.fill("#pl-notes", "每周复盘未解决工单")
    assert_labelled(page)
    shot(page, "plan-form")
    page.click("#cy-plan-form button[type=submit]")
    expect(plan_box.locator(".cy-plan-status")).to_have_attribute("data-status", "open")
    expect(plan_box.locator(".cy-plan-status")).to_have_text(text["plan_open"])
    expect(plan_box.locator(".cy-goals li")).to_have_count(3)

    # The decision, next to the suggestion. A type the server does not know: its 422 is shown
    # next to the type (whatever shape the error has).
    expect(page.locator('#cy-suggested [data-code="coaching"]')).to_be_visible()
    expect(page.locator('#dc-type option[value="team_trip"]')).to_have_count(1)
    page.evaluate(
        "() => { const s = document.querySelector('#dc-type');"
        " s.add(new Option('bonus', 'bonus')); s.value = 'bonus'; }"
    )
    page.click("#cy-decision-form button[type=submit]")
    expect(page.locator("#dc-type")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#cy-decision-form .field-msg")).to_contain_text("coaching")
    page.select_option("#dc-type", "coaching")
    page.fill("#dc-level", "weekly, 8 weeks")
    page.fill("#dc-note", "由组长辅导工单复盘")
    page.click("#cy-decision-form button[type=submit]")
    expect(page.locator("#cy-current")).to_have_attribute("data-type", "coaching")
    expect(page.locator("#cy-history li")).to_have_count(1)
    shot(page, "s43-meeting-plan-decision", full=True)

    # s-42 from its row of the appraisal table: a meeting scheduled and cancelled, then one
    # recorded as held; a pay adjustment.
    page.click("#cy-back")
    page.locator('#appraisal-table a.spec-cycle[href^="#/cycle/s-42"]').click()
    expect(page.locator("#cy-name")).to_contain_text("Li Wei")
    page.click("#cy-schedule")
    page.fill("#mt-when", f"{dt.date.today() + dt.timedelta(days=2)}T15:30")
    dlg.locator("button[type=submit]").click()
    first = page.locator("#cy-meetings .cy-meeting").first
    expect(first).to_have_attribute("data-status", "scheduled")
    expect(page.locator("#cy-record")).to_have_count(0)  # one stands already
    first.locator('[data-act="cancel"]').click()
    page.locator("#cy-cancel-dlg button[type=submit]").click()
    expect(first).to_have_attribute("data-status", "cancelled")
    expect(first.locator('[data-act="again"]')).to_be_visible()
    page.click("#cy-record")
    expect(dlg).to_be_visible()
    page.fill("#mt-a-0", "Share the response checklist")
    dlg.locator("button[type=submit]").click()
    expect(page.locator('#cy-meetings .cy-meeting[data-status="held"]')).to_have_count(1)
    page.select_option("#dc-type", "pay_adjustment_candidate")
    page.fill("#dc-amount", "800")
    page.fill("#dc-level", "+5%")
    # An answer in the problem+json shape: its detail is shown (and its field, where the
    # fetch layer passes the errors on), nothing is recorded.
    page.route(
        "**/appraisals/*/decision",
        lambda route: route.fulfill(
            status=422, content_type="application/problem+json", body=json.dumps(PROBLEM)
        ),
    )
    page.click("#cy-decision-form button[type=submit]")
    expect(page.locator("#cy-decision-form .form-error")).to_contain_text(PROBLEM["detail"])
    expect(page.locator("#cy-current")).to_have_attribute("data-type", "")
    page.unroute("**/appraisals/*/decision")
    page.click("#cy-decision-form button[type=submit]")
    expect(page.locator("#cy-current")).to_have_attribute("data-type", "pay_adjustment_candidate")
    shot(page, "s42-decision", full=True)

    # Nobody is missing a meeting or a decision now.
    page.click("#cy-back")
    expect(page.locator("#cy-missing")).to_have_attribute("data-missing", "0")
    expect(page.locator("#cy-missing")).to_have_text(text["nobody_missing"])
    page.check("#cy-filter-missing_decision")
    expect(table).to_have_count(0)
    expect(page.locator(".cy-empty")).to_be_visible()
    page.check("#cy-filter-all")
    for sid in ("s-42", "s-43"):
        row = table.locator(f'tr[data-sid="{sid}"]')
        expect(row).to_have_attribute("data-missing", "acknowledged")
        expect(row.locator('[data-col="meeting"]')).to_have_attribute("data-status", "held")
    shot(page, "cycle-panel-nobody-missing", full=True)


def specialist_part(
    page: Any,
    expect: Any,
    shot: Callable[..., None],
    login: Login,
    quarter: str,
    text: dict[str, str],
    lang: str,
    scoring: str,
) -> None:
    sign_in(page, expect, login)
    # My page only: one menu entry, no team views.
    expect(page.locator("#me-title")).to_be_visible()
    # The team by its name, though a specialist may not read the team route.
    expect(page.locator("#me-sub")).to_contain_text("North 华北")
    expect(page.locator('a[data-nav="me"]')).to_have_text(text["nav_me"])
    expect(page.locator('a[data-nav="me"]')).to_have_attribute("aria-current", "page")
    for nav in ("overview", "leaderboard", "appraisal", "alerts"):
        expect(page.locator(f'a[data-nav="{nav}"]')).to_be_hidden()
    rows = page.locator("#me-appraisals tbody tr")
    expect(rows).to_have_count(4)
    expect(rows.first.locator(".cy-badge")).to_have_attribute("data-state", "provisional")
    this = page.locator(f'#me-appraisals tr[data-quarter="{quarter}"]')
    expect(this.locator(".cy-badge")).to_have_attribute("data-state", "final")
    expect(page.locator("#me-ap")).to_contain_text("辅导" if lang == "zh-CN" else "coaching")
    expect(page.locator("#me-kpis .tile").first).to_be_visible()
    expect(page.locator('#me-kpis svg[data-kpi="resolution_rate"]')).to_be_visible()
    assert_labelled(page)
    shot(page, "my-page", full=True)

    # The held meeting's record, then the appraisal: acknowledged.
    meeting = page.locator("#me-meetings .cy-meeting")
    expect(meeting).to_have_attribute("data-status", "held")
    meeting.locator("[data-ack-meeting]").click()
    expect(meeting.locator(".cy-ack")).to_have_attribute("data-acked", "yes")
    page.click("#me-ack")
    expect(page.locator("#me-acked")).to_contain_text(text["acked"])
    expect(this.locator("td").last).not_to_have_text("—")

    # The comment: refused empty (named next to the box), then saved.
    page.click("#me-comment-form button[type=submit]")
    expect(page.locator("#me-comment")).to_have_attribute("aria-invalid", "true")
    page.fill("#me-comment", COMMENT[lang])
    page.click("#me-comment-form button[type=submit]")
    expect(page.locator("#me-comment-saved")).not_to_be_empty()
    expect(page.locator("#me-comment")).not_to_have_attribute("aria-invalid", "true")

    # A progress note on the plan the supervisor opened.
    expect(page.locator("#me-plan .cy-plan-status")).to_have_attribute("data-status", "open")
    page.fill("#me-note-form textarea", NOTE[lang])
    page.click("#me-note-form button[type=submit]")
    expect(page.locator("#me-notes")).to_contain_text(NOTE[lang])
    shot(page, "my-page-acknowledged", full=True)

    # Someone else's page is not found, like an id nobody has; the team views are not theirs.
    page.goto(f"{scoring}/ui/#/specialist/s-42")
    expect(page.locator("#me-notfound")).to_have_text(text["not_found"])
    expect(page.locator("#main")).not_to_contain_text("Li Wei")
    shot(page, "other-specialist-not-found")
    page.goto(f"{scoring}/ui/#/specialist/nobody")
    expect(page.locator("#me-notfound")).to_have_text(text["not_found"])
    for view in ("overview", "appraisal", "alerts", f"cycle/s-42?quarter={quarter}"):
        page.goto(f"{scoring}/ui/#/{view}")
        expect(page.locator("#me-title")).to_be_visible()
        expect(page.locator("#me-ap")).to_be_visible()
    page.goto(f"{scoring}/ui/#/me/{quarter}")
    expect(page.locator("#me-acked")).to_be_visible()
