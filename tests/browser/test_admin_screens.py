"""The admin screens in headless Chromium against the real services: teams and specialists
(aliases, unmapped agents, CSV import) and alert channels with "Send test", in English and
Chinese; a supervisor gets neither."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kpi.stack import ServiceProcess
from shared.auth import Role, issue_token
from shared.db import session_scope
from shared.webhooks import verify_webhook_signature
from tests.browser.conftest import StartStack
from tests.browser.support import assert_dashboard_csp, watch_csp
from tests.integration.notify_support import Receiver
from tests.service_helpers import ADMIN_TOKEN, CHROMIUM_ARGS

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SECRET = "browser-hook-secret-7d2"
# A file with one bad row (unknown team), then the same file fixed.
BAD_CSV = (
    "id,name,team_id,aliases.email\n"
    "wang.fang,王芳 Wang Fang,bt-north,WANG@example.com\n"
    "zhao,Zhao,nowhere,\n"
)
GOOD_CSV = BAD_CSV.replace("nowhere", "bt-north")


async def test_admin_screens_in_english_and_chinese(
    sessionmaker: async_sessionmaker[AsyncSession],
    clean_db: AsyncEngine,
    start_stack: StartStack,
    shots: Path,
    chromium: str,
) -> None:
    procs = await start_stack(["ingest", "notify", "scoring"])
    async with session_scope(sessionmaker) as session:
        sup_token, _ = await issue_token(session, Role.SUPERVISOR, "sup-ann", ["bt-north"])
    async with clean_db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO webhook_unmapped_agents (vendor, agent_id, email, name, counted_as, "
                "events, first_seen_at, last_seen_at) VALUES ('zendesk', '3612', "
                "'li.na@example.com', 'Li Na 李娜', 'zendesk:3612', 7, :t, :t)"
            ),
            {"t": dt.datetime.now(dt.UTC)},
        )
    receiver = Receiver().start()
    try:
        await asyncio.to_thread(journey, chromium, shots, procs, receiver, sup_token)
    finally:
        receiver.stop()


def journey(
    executable: str,
    shots: Path,
    procs: dict[str, ServiceProcess],
    receiver: Receiver,
    sup_token: str,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    scoring = procs["scoring"].url
    http = httpx.Client(headers=ADMIN, timeout=10)

    def specialist(sid: str) -> dict[str, Any]:
        got: dict[str, Any] = http.get(f"{scoring}/v1/specialists/{sid}").json()
        return got

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        page = browser.new_context(
            viewport={"width": 1400, "height": 900}, locale="en-US"
        ).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(f"{exc}\n{exc.stack}"))
        page.on("dialog", lambda d: d.accept())  # the delete confirmation
        csp = watch_csp(page)
        page.set_default_timeout(20_000)
        try:
            assert_dashboard_csp(page.goto(scoring + "/"))
            page.fill("#login-token", ADMIN_TOKEN)
            page.click("#login-form button[type=submit]")

            # -- Teams: create one through the dialog.
            page.click('a[data-nav="directory"]')
            expect(page.locator("#main h1")).to_have_text("Teams and specialists")
            expect(page.locator("#dir-panel")).to_contain_text("No teams yet")
            page.click("#team-new")
            page.fill("#team-id", "bt-north")
            page.fill("#team-name", "North 华北")
            page.fill("#team-supervisor", "sup-ann")
            page.click("#team-dialog button[type=submit]")
            row = page.locator('#teams-table tr[data-team="bt-north"]')
            expect(row).to_contain_text("North 华北")
            expect(row).to_contain_text("sup-ann")
            page.screenshot(path=shots / "30-admin-teams.png")

            # -- Specialists: create one with a team and aliases; a bad id is named.
            page.click("#dir-specialists")
            page.click("#spec-new")
            page.fill("#spec-id", "bad\u0001id")
            page.click("#spec-dialog button[type=submit]")
            expect(page.locator("#spec-dialog .form-error")).to_contain_text("specialist_id")
            expect(page.locator("#spec-id")).to_have_attribute("aria-invalid", "true")
            page.fill("#spec-id", "li.na")
            page.fill("#spec-name", "Li Na 李娜")
            page.select_option("#spec-team-id", "bt-north")
            page.fill("#alias-chatwoot", "42")
            page.screenshot(path=shots / "31-admin-specialist-dialog.png")
            page.click("#spec-dialog button[type=submit]")
            expect(page.locator('#specialists-table tr[data-specialist="li.na"]')).to_contain_text(
                "North 华北"
            )
            assert specialist("li.na")["aliases"] == {"chatwoot": "42"}

            # -- Unmapped agents: map the Zendesk agent to li.na; its alias joins the other.
            page.click("#dir-unmapped")
            agent = page.locator('#unmapped-table tr[data-agent="zendesk:3612"]')
            expect(agent).to_contain_text("zendesk:3612")
            page.screenshot(path=shots / "32-admin-unmapped.png")
            agent.get_by_role("button").click()
            page.fill("#map-specialist", "li.na")
            page.click("#map-dialog button[type=submit]")
            expect(page.locator("#unmapped-empty")).to_be_visible()
            assert specialist("li.na")["aliases"] == {"chatwoot": "42", "zendesk": "3612"}
            assert specialist("li.na")["team_id"] == "bt-north"

            # -- CSV import: a bad row applies nothing and is named; fixed, checked, imported.
            page.click("#dir-import")
            page.fill("#import-text", BAD_CSV)
            page.click("#import-run")
            expect(page.locator("#import-summary")).to_contain_text("Nothing was imported")
            bad = page.locator("#import-errors tbody tr")
            expect(bad).to_have_count(1)
            expect(bad).to_contain_text("3")
            expect(bad).to_contain_text("team_id")
            expect(bad).to_contain_text("unknown team 'nowhere'")
            assert http.get(f"{scoring}/v1/specialists/wang.fang").status_code == 404
            page.screenshot(path=shots / "33-admin-import-refused.png")
            page.fill("#import-text", GOOD_CSV)
            page.click("#import-check")
            expect(page.locator("#import-summary")).to_contain_text("2 would be created")
            assert http.get(f"{scoring}/v1/specialists/wang.fang").status_code == 404
            page.click("#import-run")
            expect(page.locator("#import-summary")).to_contain_text("Imported: 2 created")
            expect(page.locator('#import-rows tr[data-outcome="created"]')).to_have_count(2)
            assert specialist("wang.fang")["aliases"] == {"email": "wang@example.com"}
            page.screenshot(path=shots / "34-admin-imported.png")

            # -- Channels: create a webhook, send a test, edit it without seeing its secret.
            page.click('a[data-nav="channels"]')
            expect(page.locator("#ch-empty")).to_be_visible()
            page.click("#ch-new")
            page.fill("#ch-name", "ops hook")
            page.select_option("#ch-team", "bt-north")
            page.fill("#ch-cfg-url", receiver.url + "/hook?token=TOPSECRET")
            page.fill("#ch-cfg-secret", SECRET)
            page.click("#channel-dialog button[type=submit]")
            row = page.locator("#channels-table tbody tr")
            expect(row).to_contain_text("ops hook")
            expect(row).not_to_contain_text("TOPSECRET")
            row.get_by_role("button", name="Send test: ops hook").click()
            expect(row.locator(".ch-test")).to_contain_text("Test delivered")
            expect(row.locator(".ch-test")).to_contain_text("HTTP 200")
            (got,) = receiver.snapshot()
            assert got.json()["type"] == "channel_test"
            assert verify_webhook_signature(SECRET, got.body, got.headers["X-KPI-Signature"])
            page.screenshot(path=shots / "35-admin-channel-tested.png")
            row.get_by_role("button", name="Edit: ops hook").click()
            assert page.input_value("#ch-cfg-secret") == ""  # never filled in
            assert "TOPSECRET" not in page.content()
            page.screenshot(path=shots / "36-admin-channel-dialog.png")
            page.fill("#ch-name", "ops hook 2")
            page.click("#channel-dialog button[type=submit]")
            expect(row).to_contain_text("ops hook 2")
            row.get_by_role("button", name="Send test: ops hook 2").click()
            expect(row.locator(".ch-test")).to_contain_text("Test delivered")
            last = receiver.snapshot()[-1]
            assert last.path == "/hook?token=TOPSECRET"  # the stored URL and secret were kept
            assert verify_webhook_signature(SECRET, last.body, last.headers["X-KPI-Signature"])

            # -- The same screens in Chinese.
            page.select_option("#lang-select", "zh-CN")
            expect(page.locator('a[data-nav="channels"]')).to_have_text("通知渠道")
            expect(page.locator("#main h1")).to_have_text("告警通知渠道")
            row.get_by_role("button", name="发送测试: ops hook 2").click()
            expect(row.locator(".ch-test")).to_contain_text("测试已送达")
            page.screenshot(path=shots / "37-admin-channels-zh.png")
            page.click('a[data-nav="directory"]')
            expect(page.locator("#main h1")).to_have_text("团队与专员")
            page.click("#dir-specialists")
            expect(page.locator("#specialists-table")).to_contain_text("王芳 Wang Fang")
            page.screenshot(path=shots / "38-admin-specialists-zh.png")
            page.click("#dir-import")
            page.fill("#import-text", BAD_CSV.replace("wang.fang", "new.one"))
            page.click("#import-check")
            expect(page.locator("#import-summary")).to_contain_text("未导入任何内容")
            page.screenshot(path=shots / "39-admin-import-zh.png")
            page.click('a[data-nav="channels"]')
            row.get_by_role("button", name="删除: ops hook 2").click()
            expect(page.locator("#ch-empty")).to_be_visible()
            page.select_option("#lang-select", "en")
            assert not errors, errors
            assert not csp, csp

            # -- A supervisor: no admin menu, and the routes say so.
            page.click("#logout")
            page.fill("#login-token", sup_token)
            page.click("#login-form button[type=submit]")
            expect(page.locator("#whoami")).to_contain_text("sup-ann")
            expect(page.locator('a[data-nav="directory"]')).to_be_hidden()
            expect(page.locator('a[data-nav="channels"]')).to_be_hidden()
            page.goto(scoring + "/ui/#/channels")
            expect(page.locator("#admins-only")).to_contain_text("Only admins")
            page.screenshot(path=shots / "41-admin-screens-supervisor.png")
            assert not errors, errors
        finally:
            page.screenshot(path=shots / "49-admin-last.png")
            browser.close()
            http.close()
