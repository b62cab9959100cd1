"""The team page's trend chart (pooled daily values, 7-day rolling line) in headless Chromium,
in English and Chinese, against real scoring and notify processes."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.browser.conftest import StartStack
from tests.browser.support import assert_dashboard_csp, watch_csp
from tests.service_helpers import ADMIN_TOKEN, CHROMIUM_ARGS

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_team_trend_in_both_languages(
    clean_db: AsyncEngine, chromium: str, shots: Path, start_stack: StartStack
) -> None:
    services = await start_stack(["notify", "scoring"])
    scoring = services["scoring"].url
    today = dt.datetime.now(dt.UTC).date()  # KPI_TIMEZONE is UTC here

    def d(back: int) -> dt.date:
        return today - dt.timedelta(days=back)

    async with httpx.AsyncClient(base_url=scoring, headers=ADMIN, timeout=10) as http:
        for team, name in (("north", "North 北区"), ("south", "South")):
            r = await http.put(f"/v1/teams/{team}", json={"name": name})
            assert r.status_code == 200, r.text
        for sid, team in (("a", "north"), ("b", "north"), ("c", "south")):
            body = {"name": sid.upper(), "team_id": team}
            r = await http.put(f"/v1/specialists/{sid}", json=body)
            assert r.status_code == 200, r.text
    rows = [
        # CSAT over the last 7 days, pooled: (9 + 1 + 0) / (10 + 1 + 1) = 83.3 %. A mean of
        # the members' ratios would be 45.5 %, a mean of the daily ratios 90.9 %.
        ("a", d(0), "customer_satisfaction", 9.0, 10),
        ("b", d(0), "customer_satisfaction", 0.0, 1),
        ("a", d(3), "customer_satisfaction", 1.0, 1),
        ("c", d(0), "customer_satisfaction", 0.0, 50),  # another team's: not pooled
        # Resolution: (3 + 1) / (4 + 1) = 80.0 %.
        ("a", d(1), "resolution_rate", 3.0, 4),
        ("b", d(1), "resolution_rate", 1.0, 1),
    ]
    async with clean_db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO kpi_daily (specialist_id, day, metric, num, den) "
                "VALUES (:s, :d, :m, :n, :k)"
            ),
            [{"s": s, "d": day, "m": m, "n": n, "k": k} for s, day, m, n, k in rows],
        )

    def journey() -> None:
        from playwright.sync_api import expect, sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900}, locale="en-US")
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(f"{exc}\n{exc.stack}"))
            csp = watch_csp(page)
            page.set_default_timeout(20_000)
            panel = page.locator("#ov-trend")
            chart = page.locator("#team-trend svg")
            try:
                assert_dashboard_csp(page.goto(scoring + "/"))
                page.fill("#login-token", ADMIN_TOKEN)
                page.click("#login-form button[type=submit]")
                expect(page.locator(".team-card").first).to_be_visible()
                # All teams: no team page, no trend.
                expect(panel).to_be_hidden()
                page.locator('.team-card[data-team="north"]').click()
                expect(panel).to_be_visible()
                expect(panel.locator("h2")).to_have_text("Team trend")
                expect(page.locator("#team-trend")).to_have_attribute(
                    "data-kpi", "customer_satisfaction"
                )
                expect(chart).to_have_attribute("aria-label", r_label("7-day rolling 83.3%"))
                expect(page.locator("#team-trend h3")).to_contain_text("North 北区")
                expect(page.locator("#team-trend figcaption")).to_contain_text("7-day rolling")
                page.screenshot(path=shots / "team-trend-en-01-csat.png")

                page.select_option("#tt-kpi", "resolution_rate")
                expect(chart).to_have_attribute("aria-label", r_label("7-day rolling 80.0%"))
                assert "trend=resolution_rate" in page.url and "team=north" in page.url
                page.screenshot(path=shots / "team-trend-en-02-resolution.png")

                # Chinese: the same page (team and KPI from the address), translated.
                page.select_option("#lang-select", "zh-CN")
                expect(panel.locator("h2")).to_have_text("团队趋势")
                expect(page.locator("label[for=tt-kpi]")).to_have_text("指标")
                expect(chart).to_have_attribute("aria-label", r_label("7 日滚动 80.0%"))
                expect(page.locator("#team-trend h3")).to_contain_text("问题解决率")
                page.select_option("#tt-kpi", "customer_satisfaction")
                expect(chart).to_have_attribute("aria-label", r_label("7 日滚动 83.3%"))
                page.screenshot(path=shots / "team-trend-zh-01-csat.png")
                # Another team: its own members only (c's 0/50 is south's).
                page.select_option("#ov-team", "south")
                expect(page.locator("#team-trend")).to_have_attribute("data-team", "south")
                expect(chart).to_have_attribute("aria-label", r_label("7 日滚动 0.0%"))
                page.screenshot(path=shots / "team-trend-zh-02-south.png")
                page.select_option("#lang-select", "en")
                assert not errors, errors
                assert not csp, csp
            finally:
                page.screenshot(path=shots / "team-trend-99-last.png")
                browser.close()

    await asyncio.to_thread(journey)


def r_label(fragment: str) -> re.Pattern[str]:
    return re.compile(re.escape(fragment))
