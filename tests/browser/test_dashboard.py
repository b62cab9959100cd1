"""The dashboard in headless Chromium against the real services (ingest, scoring, notify)."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import uuid
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
from tests.service_helpers import (
    ADMIN_TOKEN,
    CHROMIUM_ARGS,
)

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def csat(specialist: str, score: int) -> dict[str, Any]:
    return {
        "event_id": f"bt-{uuid.uuid4()}",
        "type": "survey.csat",
        "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
        "specialist_id": specialist,
        "score": score,
    }


async def test_dashboard_journey(
    sessionmaker: async_sessionmaker[AsyncSession],
    start_stack: StartStack,
    shots: Path,
    chromium: str,
) -> None:
    procs = await start_stack(["ingest", "notify", "scoring"])
    async with session_scope(sessionmaker) as session:
        sup_token, _ = await issue_token(session, Role.SUPERVISOR, "sup-ann", ["bt-north"])
    # The browser part uses Playwright's sync API, which must not run inside an event loop.
    await asyncio.to_thread(
        journey,
        chromium,
        shots,
        procs,
        sup_token,
    )


def journey(executable: str, shots: Path, procs: dict[str, ServiceProcess], sup_token: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    scoring, ingest, notify = procs["scoring"].url, procs["ingest"].url, procs["notify"].url
    http = httpx.Client(headers=ADMIN, timeout=10)
    for team, name in (("bt-north", "North 华北"), ("bt-south", "South 华南")):
        r = http.put(f"{scoring}/v1/teams/{team}", json={"name": name, "supervisor": None})
        assert r.status_code == 200, r.text
    for sid, name, team in (
        ("bt-1", "Li Wei 李伟", "bt-north"),
        ("bt-2", "Wang Fang 王芳", "bt-north"),
        ("bt-3", "Zhao Min 赵敏", "bt-south"),
    ):
        r = http.put(f"{scoring}/v1/specialists/{sid}", json={"name": name, "team_id": team})
        assert r.status_code == 200, r.text

    def send(events: list[dict[str, Any]]) -> None:
        r = http.post(f"{ingest}/v1/events", json=events)
        assert r.status_code == 202 and r.json()["rejected"] == 0, r.text

    def csat_of(sid: str) -> dict[str, Any]:
        r = http.get(f"{scoring}/v1/specialists/{sid}/kpis")
        kpis: dict[str, Any] = r.json()["kpis"]["customer_satisfaction"]
        return kpis

    send([csat(sid, 5) for sid in ("bt-1", "bt-2", "bt-3") for _ in range(12)])
    until(lambda: all(csat_of(s)["denominator"] == 12 for s in ("bt-1", "bt-2", "bt-3")), 60,
          "the first surveys to be scored")  # fmt: skip

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        context = browser.new_context(
            viewport={"width": 1400, "height": 900}, locale="en-US", accept_downloads=True
        )
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(f"{exc}\n{exc.stack}"))
        csp = watch_csp(page)
        page.set_default_timeout(20_000)
        try:
            # Log in as the supervisor of bt-north: bt-3 (another team) is not shown.
            assert_dashboard_csp(page.goto(scoring + "/"))
            expect(page.locator("#login-form")).to_be_visible()
            page.screenshot(path=shots / "01-login.png")
            page.fill("#login-token", "not-a-token")
            page.click("#login-form button[type=submit]")
            expect(page.locator("#login-error")).to_contain_text("not valid")
            page.fill("#login-token", sup_token)
            page.click("#login-form button[type=submit]")
            cell = page.locator(
                '#overview-table [data-sid="bt-1"] [data-kpi="customer_satisfaction"]'
            )
            expect(cell).to_have_attribute("data-grade", "excellent")
            expect(cell).to_contain_text("100.0%")
            expect(page.locator('#overview-table [data-sid="bt-2"]')).to_be_visible()
            expect(page.locator('[data-sid="bt-3"]')).to_have_count(0)
            expect(page.locator("#whoami")).to_contain_text("sup-ann")
            expect(page.locator('#overview-table [data-row="pooled"]')).to_contain_text("North")
            before = cell.evaluate("el => getComputedStyle(el).backgroundColor")
            page.screenshot(path=shots / "02-overview.png")

            # Events arrive: bt-1's CSAT falls to 50 % and the cell turns "below line".
            send([csat("bt-1", 1) for _ in range(12)])
            expect(cell).to_have_attribute("data-grade", "unqualified", timeout=45_000)
            expect(cell).to_contain_text("50.0%")
            expect(cell).to_contain_text("Below line")
            after = cell.evaluate("el => getComputedStyle(el).backgroundColor")
            assert before != after, (before, after)
            page.screenshot(path=shots / "03-overview-changed.png")

            # Search narrows the table; sort by CSAT puts the weakest first.
            page.fill("#ov-search", "wang")
            expect(page.locator("#overview-table [data-sid]")).to_have_count(1)
            # Enter in a toolbar field filters, it does not submit the form (reload the page).
            page.evaluate("window.kpiNoReload = true")
            page.press("#ov-search", "Enter")
            expect(page.locator("#overview-table [data-sid]")).to_have_count(1)
            assert page.evaluate("window.kpiNoReload === true")
            page.fill("#ov-search", "")
            page.click('[data-sort="customer_satisfaction"] button')
            expect(page.locator("#overview-table [data-sid]").first).to_have_attribute(
                "data-sid", "bt-1"
            )

            # Export the overview as CSV: a real file with what the table shows.
            with page.expect_download() as dl:
                page.click("#ov-export")
            path = dl.value.path()
            assert path is not None
            rows = list(csv.DictReader(Path(path).read_text(encoding="utf-8-sig").splitlines()))
            by_id = {r["specialist_id"]: r for r in rows}
            assert set(by_id) == {"(pooled)", "bt-1", "bt-2"}
            assert float(by_id["bt-1"]["customer_satisfaction"]) == pytest.approx(0.5)
            assert by_id["bt-1"]["customer_satisfaction_grade"] == "unqualified"
            assert by_id["bt-1"]["customer_satisfaction_denominator"] == "24"
            dl.value.save_as(shots / "overview.csv")

            # The alert fired; it appears in the live feed and can be acknowledged.
            page.click('a[data-nav="alerts"]')
            item = page.locator('li[data-alert][data-status="firing"]', has_text="Li Wei")
            expect(item).to_be_visible(timeout=45_000)
            expect(page.locator("#alert-count")).to_have_text("1")
            page.screenshot(path=shots / "04-alerts.png")
            item.get_by_role("button", name="Acknowledge").click()
            expect(item).to_have_attribute("data-acked", "yes")
            expect(item).to_contain_text("Acknowledged by sup-ann")
            alert_id = item.get_attribute("data-alert")
            acked = http.get(f"{notify}/v1/alerts/{alert_id}").json()
            assert acked["acked_by"] == "sup-ann" and acked["acked_at"], acked

            # Silence dialog: keyboard-reachable, creates a silence in notify.
            item.get_by_role("button", name="Silence").click()
            page.locator("dialog button[type=submit]").click()
            expect(page.locator("#al-silences")).to_contain_text("Li Wei")
            assert http.get(f"{notify}/v1/silences").json()["items"]

            # Specialist page: tiles with lines, charts, the events behind the value.
            page.goto(scoring + "/ui/#/specialist/bt-1")
            tile = page.locator('.tile[data-kpi="customer_satisfaction"]')
            expect(tile).to_have_attribute("data-grade", "unqualified")
            expect(tile).to_contain_text("Qualified 85%")
            # Gauge sizes are set through the CSSOM (the CSP forbids style attributes).
            sized = (
                "el => el.style.width.endsWith('%') "
                "&& parseFloat(el.style.width) === parseFloat(el.dataset.width)"
            )
            assert tile.locator(".gauge .fill").evaluate(sized)
            assert tile.locator(".gauge .mark").first.evaluate("el => el.style.left.endsWith('%')")
            expect(page.locator('#sp-charts svg[data-kpi="customer_satisfaction"]')).to_be_visible()
            expect(page.locator("#facts-table tbody tr")).to_have_count(24)
            expect(page.locator("#sp-alerts")).to_contain_text("Customer satisfaction")
            # The informational measures (SPEC §3a) come after the appraised KPIs, under
            # their own heading, ungraded without lines.
            order = page.locator("#sp-tiles > *").evaluate_all(
                "els => els.map(e => e.dataset.kpi || e.id || 'sep')"
            )
            heading = order.index("sp-info-h")
            assert order[:7] == [
                "customer_satisfaction", "resolution_rate", "avg_response_time_hours",
                "record_accuracy", "followup_rate", "collaboration_score", "training_sessions",
            ] and order[7] == "nps", order  # fmt: skip
            assert heading == 8, order
            assert [k for k in order[heading:] if k.endswith(("_hours", "_rate"))] == [
                "resolution_time_hours", "first_response_sla_rate", "reopen_rate"
            ], order  # fmt: skip
            expect(page.locator("#sp-info-h")).to_have_text(
                "Informational measures (not appraised)"
            )
            expect(page.locator('.tile[data-kpi="reopen_rate"]')).to_have_attribute(
                "data-grade", "none"
            )
            page.screenshot(path=shots / "05-specialist.png", full_page=True)

            # Leaderboard.
            page.click('a[data-nav="leaderboard"]')
            expect(page.locator("#lb-table tbody tr").first).to_contain_text("Wang Fang")
            bar = page.locator("#lb-table tbody tr .bar").first
            assert bar.evaluate("el => el.style.width") == "100%"
            assert bar.evaluate("el => getComputedStyle(el).color") == "rgb(31, 157, 77)"

            # Switch to Chinese: the chrome and the view are translated, <html lang> follows.
            page.select_option("#lang-select", "zh-CN")
            expect(page.locator('a[data-nav="overview"]')).to_have_text("团队总览")
            expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
            expect(page.locator("#main h1")).to_have_text("排行榜")
            page.click('a[data-nav="overview"]')
            expect(cell).to_contain_text("不合格")
            # The measures' columns come last, the first one behind a divider, named in Chinese.
            info = page.locator('#overview-table .gt-head [data-sort="resolution_time_hours"]')
            expect(info).to_have_class("info-col info-first")
            expect(info.locator("button")).to_have_text("解决时长")
            page.screenshot(path=shots / "06-overview-zh.png")

            # Appraisal view: the appraisal module's export when present, else the fallback.
            page.click('a[data-nav="appraisal"]')
            expect(page.locator("#appraisal-table")).to_contain_text("Li Wei")
            with page.expect_download() as dl2:
                page.click("#ap-csv")
            text = Path(dl2.value.path() or "").read_bytes().decode("utf-8-sig")
            assert "bt-1" in text and "bt-3" not in text, text[:500]
            page.screenshot(path=shots / "07-appraisal-zh.png")
            page.select_option("#lang-select", "en")

            # Notify goes down: a clear banner, and the KPIs still work.
            procs["notify"].stop()
            page.click('a[data-nav="overview"]')
            expect(page.locator("#banner")).to_be_visible(timeout=30_000)
            expect(page.locator("#banner")).to_contain_text("Alerts unavailable")
            expect(cell).to_have_attribute("data-grade", "unqualified")
            page.screenshot(path=shots / "08-notify-down.png")
            r = http.get(f"{scoring}/v1/dashboard/notify/alerts")
            assert r.status_code == 503 and "unavailable" in r.json()["detail"]
            assert not errors, errors
            assert not csp, csp
        finally:
            page.screenshot(path=shots / "99-last.png")
            browser.close()
            http.close()
