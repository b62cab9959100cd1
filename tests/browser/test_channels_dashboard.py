"""Specialist and team pages show KPIs by channel and the time distributions (issue 17), in
English and Chinese, without page errors or Content-Security-Policy violations."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scoring.engine.handlers import process_batch
from services.scoring.kpi.measure import Measure
from shared.db import session_scope
from shared.events import validate_event_obj
from tests.browser.conftest import StartStack
from tests.browser.support import assert_dashboard_csp, watch_csp
from tests.service_helpers import ADMIN_TOKEN, CHROMIUM_ARGS

pytestmark = pytest.mark.integration

TEXT = {
    "en": {"title": "By channel", "dist": "Time distributions", "unknown": "unknown"},
    "zh-CN": {"title": "按渠道", "dist": "时长分布", "unknown": "未知"},
}


def events() -> list[Any]:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)
    out: list[dict[str, Any]] = []
    for i, (channel, hours) in enumerate((("web", 0.5), ("电话", 3.0), ("web", 30.0))):
        tid = f"ch-t{i}"
        at = start + dt.timedelta(hours=hours)
        out += [
            {"event_id": f"{tid}-c", "type": "ticket.created", "occurred_at": start.isoformat(),
             "ticket_id": tid, "specialist_id": "ch-1", "channel": channel},
            {"event_id": f"{tid}-r", "type": "ticket.first_response",
             "occurred_at": at.isoformat(), "ticket_id": tid, "specialist_id": "ch-1"},
            {"event_id": f"{tid}-x", "type": "ticket.closed", "occurred_at": at.isoformat(),
             "ticket_id": tid, "specialist_id": "ch-1", "resolved": i != 1},
        ]  # fmt: skip
    out.append(
        {"event_id": "ch-s", "type": "survey.csat", "occurred_at": start.isoformat(),
         "specialist_id": "ch-1", "score": 5}
    )  # fmt: skip
    return [validate_event_obj(e) for e in out]


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
async def test_channel_table_and_distributions_on_specialist_and_team_pages(
    lang: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    start_stack: StartStack,
    shots: Path,
    chromium: str,
) -> None:
    services = await start_stack(["notify", "scoring"])
    async with session_scope(sessionmaker) as session:
        await session.execute(text("INSERT INTO teams (id, name) VALUES ('ch-team', 'Channels')"))
        await session.execute(
            text("INSERT INTO specialists (id, name, team_id) VALUES ('ch-1', 'Li', 'ch-team')")
        )
    async with session_scope(sessionmaker) as session:
        await process_batch(session, events(), measure=Measure(dt.UTC))

    def journey() -> None:
        from playwright.sync_api import expect, sync_playwright

        scoring = services["scoring"].url
        words = TEXT[lang]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1300, "height": 900}, locale=lang)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            csp = watch_csp(page)
            page.set_default_timeout(20_000)
            try:
                assert_dashboard_csp(page.goto(scoring + "/"))
                page.fill("#login-token", ADMIN_TOKEN)
                page.click("#login-form button[type=submit]")
                expect(page.locator("#whoami")).to_be_visible()

                page.goto(scoring + "/ui/#/specialist/ch-1?window=30d")
                table = page.locator("#sp-channels table")
                expect(page.locator("#sp-ch-h")).to_have_text(words["title"])
                expect(table.locator("tbody tr")).to_have_count(3)
                expect(table).to_contain_text("web")
                expect(table).to_contain_text("电话")
                expect(table).to_contain_text(words["unknown"])
                expect(page.locator("#sp-dist-h")).to_have_text(words["dist"])
                card = page.locator('#sp-dist [data-kpi="avg_response_time_hours"]')
                expect(card.locator('[data-p="p50"]')).not_to_have_text("—")
                expect(card.locator("svg.histogram rect.h-bar")).to_have_count(3)
                # Drawn at their height (no stylesheet rule squashes them).
                box = card.locator("svg.histogram rect.h-bar").first.bounding_box()
                assert box is not None and box["height"] > 20, box
                empty = page.locator('#sp-dist [data-kpi="resolution_time_hours"]')
                expect(empty).to_be_visible()
                page.screenshot(path=shots / f"60-channels-specialist-{lang}.png", full_page=True)

                page.goto(scoring + "/ui/#/overview?team=ch-team")
                expect(page.locator("#ov-ch-h")).to_have_text(words["title"])
                expect(page.locator("#ov-channels table tbody tr")).to_have_count(3)
                bars = page.locator('#ov-dist [data-kpi="avg_response_time_hours"] rect.h-bar')
                expect(bars).to_have_count(3)
                page.screenshot(path=shots / f"61-channels-team-{lang}.png", full_page=True)

                keys = page.evaluate(
                    """async () => (await import("/ui/js/views/channels.js")).STRING_KEYS"""
                )
                assert sorted(keys["en"]) == sorted(keys["zh-CN"]), keys
                assert not errors, errors
                assert not csp, csp
            finally:
                browser.close()

    await asyncio.to_thread(journey)
