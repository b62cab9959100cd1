"""The platform-health banner in headless Chromium against real scoring and notify processes."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import health
from shared.auth import Role, issue_token
from shared.db import raw_connection, session_scope
from tests.browser.conftest import StartStack
from tests.browser.support import assert_dashboard_csp, watch_csp
from tests.service_helpers import ADMIN_TOKEN, CHROMIUM_ARGS

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
T = TypeVar("T")


async def test_banner_stalled_degraded_dismissed(
    sessionmaker: async_sessionmaker[AsyncSession],
    chromium: str,
    shots: Path,
    start_stack: StartStack,
) -> None:
    executable = chromium
    services = await start_stack(["notify", "scoring"])
    async with session_scope(sessionmaker) as session:
        sup_token, _ = await issue_token(session, Role.SUPERVISOR, "sup-ann", ["north"])
    loop = asyncio.get_running_loop()

    def db(coro: Coroutine[Any, Any, T]) -> T:
        """Run a database step on the test's loop from the browser thread."""
        return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    async def open_incident(key: str, kind: str, summary: str) -> health.Incident:
        async with session_scope(sessionmaker) as session:
            return await health.open_incident(
                await raw_connection(session),
                key=key,
                kind=kind,
                service="scoring",
                summary=summary,
            )

    async def resolve(key: str) -> None:
        async with session_scope(sessionmaker) as session:
            assert await health.resolve_incident(await raw_connection(session), key)

    await open_incident(
        "stall:kpi-scoring", health.STALL, "kpi.events: 420 behind, nothing applied"
    )
    reset = await open_incident(
        "log_reset:kpi-scoring", health.LOG_RESET, "kpi.events log was reset"
    )

    def journey() -> None:
        from playwright.sync_api import expect, sync_playwright

        scoring = services["scoring"].url
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900}, locale="en-US")
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(f"{exc}\n{exc.stack}"))
            csp = watch_csp(page)
            page.set_default_timeout(20_000)
            banner = page.locator("#health-banner")
            try:
                # Admin: stalled (red), both incidents, Dismiss only on the event incident.
                assert_dashboard_csp(page.goto(scoring + "/"))
                page.fill("#login-token", ADMIN_TOKEN)
                page.click("#login-form button[type=submit]")
                expect(banner).to_be_visible()
                expect(banner).to_have_attribute("data-status", "stalled")
                expect(banner).to_contain_text("KPIs have stopped updating")
                stall_item = banner.locator('li[data-kind="stall"]')
                reset_item = banner.locator('li[data-kind="log_reset"]')
                expect(stall_item).to_contain_text("kpi.events: 420 behind, nothing applied")
                expect(reset_item).to_contain_text("kpi.events log was reset")
                expect(reset_item).to_contain_text("since")
                expect(stall_item.get_by_role("button")).to_have_count(0)
                expect(reset_item.get_by_role("button", name="Dismiss")).to_be_visible()
                red = banner.evaluate("el => getComputedStyle(el).backgroundColor")
                page.screenshot(path=shots / "11-health-stalled.png")

                # The stall clears by itself: on the next navigation the banner is amber.
                db(resolve("stall:kpi-scoring"))
                page.click('a[data-nav="leaderboard"]')
                expect(banner).to_have_attribute("data-status", "degraded")
                expect(stall_item).to_have_count(0)
                expect(banner).to_contain_text("Platform issue")
                assert banner.evaluate("el => getComputedStyle(el).backgroundColor") != red
                page.screenshot(path=shots / "12-health-degraded.png")

                # The admin dismisses the event incident: the banner goes.
                reset_item.get_by_role("button", name="Dismiss").click()
                expect(banner).to_be_hidden()
                with httpx.Client(headers=ADMIN, timeout=10) as http:
                    closed = http.get(f"{scoring}/v1/platform/incidents?status=resolved").json()
                by_id = {i["id"]: i for i in closed["incidents"]}
                assert by_id[reset.id]["resolved_by"] == "bootstrap-admin", by_id
                page.screenshot(path=shots / "13-health-ok.png")

                # A supervisor sees the banner too (in Chinese here), without Dismiss.
                db(open_incident("poison:kpi-scoring", health.POISON, "3 records dead-lettered"))
                page.click("#logout")
                page.fill("#login-token", sup_token)
                page.click("#login-form button[type=submit]")
                expect(banner).to_have_attribute("data-status", "degraded")
                expect(banner).to_contain_text("3 records dead-lettered")
                expect(banner.get_by_role("button")).to_have_count(0)
                page.select_option("#lang-select", "zh-CN")
                expect(banner).to_contain_text("平台异常")
                expect(banner).to_contain_text("记录处理失败")
                page.screenshot(path=shots / "14-health-supervisor-zh.png")
                page.select_option("#lang-select", "en")
                assert not errors, errors
                assert not csp, csp
            finally:
                page.screenshot(path=shots / "99-health-last.png")
                browser.close()

    await asyncio.to_thread(journey)
