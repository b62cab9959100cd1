"""The specialist page says when the ledger retention dropped the rows behind a value (the
value still counts those days), in English and Chinese."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.browser.conftest import StartStack
from tests.browser.support import watch_csp
from tests.service_helpers import ADMIN_TOKEN, CHROMIUM_ARGS

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_dropped_ledger_days_are_named_on_the_explain_view(
    clean_db: AsyncEngine, chromium: str, shots: Path, start_stack: StartStack
) -> None:
    services = await start_stack(["notify", "scoring"])
    scoring = services["scoring"].url
    today = dt.datetime.now(dt.UTC).date()  # KPI_TIMEZONE is UTC here
    kept = today - dt.timedelta(days=10)
    async with httpx.AsyncClient(base_url=scoring, headers=ADMIN, timeout=10) as http:
        assert (await http.put("/v1/teams/north", json={"name": "North"})).status_code == 200
        body = {"name": "Li 李", "team_id": "north"}
        assert (await http.put("/v1/specialists/li", json=body)).status_code == 200
    async with clean_db.begin() as conn:
        # 20 days of surveys in kpi_daily; the ledger kept only the last 10 days' rows.
        for back in range(20):
            day = today - dt.timedelta(days=back)
            await conn.execute(
                text(
                    "INSERT INTO kpi_daily (specialist_id, day, metric, num, den) "
                    "VALUES ('li', :d, 'customer_satisfaction', 1, 1)"
                ),
                {"d": day},
            )
            if day >= kept:
                await conn.execute(
                    text(
                        "INSERT INTO kpi_facts (specialist_id, metric, day, source, num, den) "
                        "VALUES ('li', 'customer_satisfaction', :d, :s, 1, 1)"
                    ),
                    {"d": day, "s": f"event:e{back}"},
                )
        await conn.execute(
            text(
                "INSERT INTO ledger_retention (kept_from) VALUES (:k) "
                "ON CONFLICT (id) DO UPDATE SET kept_from = excluded.kept_from"
            ),
            {"k": kept},
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
            notice = page.locator("#sp-kept")
            try:
                page.goto(scoring + "/")
                page.fill("#login-token", ADMIN_TOKEN)
                page.click("#login-form button[type=submit]")
                expect(page.locator('a[data-nav="overview"]')).to_be_visible(timeout=20_000)
                page.goto(scoring + "/ui/#/specialist/li")
                expect(page.locator("#facts-table tbody tr")).to_have_count(11, timeout=20_000)
                expect(notice).to_contain_text(f"Rows before {kept.isoformat()} were dropped")
                page.screenshot(path=shots / "ledger-kept-en.png")
                page.select_option("#lang-select", "zh-CN")
                expect(notice).to_contain_text(f"{kept.isoformat()} 之前的明细")
                page.screenshot(path=shots / "ledger-kept-zh-CN.png")
                page.select_option("#lang-select", "en")
                assert not errors, errors
                assert not csp, csp
            finally:
                browser.close()

    try:
        await asyncio.to_thread(journey)
    finally:
        async with clean_db.begin() as conn:
            await conn.execute(text("DELETE FROM ledger_retention"))
