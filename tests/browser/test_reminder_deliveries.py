"""A cycle reminder whose delivery fails is named on the dashboard's failed-deliveries list in
en and zh-CN, and resent from there (real notify and scoring, real PostgreSQL)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kpi.stack import ServiceProcess
from shared import reminders
from shared.db import create_engine, create_sessionmaker, raw_connection, session_scope
from tests.browser.conftest import StartStack
from tests.browser.support import until
from tests.integration.notify_support import Receiver, Switch
from tests.service_helpers import ADMIN_TOKEN, CHROMIUM_ARGS

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def record(sm: async_sessionmaker[AsyncSession], sid: str, team: str) -> None:
    """What scoring's scan records for a meeting not held (the scan itself is off here)."""
    reminder = reminders.NewReminder(
        key=reminders.reminder_key("meeting_not_held", sid, "2026Q3", uuid.uuid4().hex),
        kind="meeting_not_held",
        specialist_id=sid,
        team_id=team,
        quarter="2026Q3",
        due=dt.date(2026, 10, 19),
        subject={
            "finalized_on": "2026-10-05",
            "days_since_finalized": 14,
            "meeting_status": "none",
        },
    )
    async with session_scope(sm) as session:
        conn = await raw_connection(session)
        assert await reminders.record_reminders(conn, [reminder], dt.datetime.now(dt.UTC))


async def test_a_failed_reminder_delivery_is_named_and_resent(
    database_url: str, start_stack: StartStack, shots: Path, chromium: str
) -> None:
    procs = await start_stack(
        ["notify", "scoring"],
        KPI_NOTIFY_RETRY_FOR="3s",
        KPI_NOTIFY_RETRY_BASE_SECONDS="0.2",
        KPI_NOTIFY_RETRY_MAX_SECONDS="0.5",
        KPI_NOTIFY_TICK_SECONDS="1",
        KPI_REMINDERS_ENABLED="false",
    )
    switch = Switch()
    receiver = Receiver(behaviour=switch).start()
    engine = create_engine(database_url, pool_size=1, application_name="kpi-tests")
    sm = create_sessionmaker(engine)
    loop = asyncio.get_running_loop()

    def remind() -> None:
        # Playwright's sync API owns the journey thread's loop: write on the test's loop.
        asyncio.run_coroutine_threadsafe(record(sm, "rm-1", "rm-north"), loop).result(30)

    try:
        await asyncio.to_thread(journey, chromium, shots, procs, receiver, switch, remind)
    finally:
        receiver.stop()
        await engine.dispose()


def journey(
    executable: str,
    shots: Path,
    procs: dict[str, ServiceProcess],
    receiver: Receiver,
    switch: Switch,
    remind: Callable[[], None],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    scoring, notify = procs["scoring"].url, procs["notify"].url
    http = httpx.Client(headers=ADMIN, timeout=10)
    r = http.put(f"{scoring}/v1/teams/rm-north", json={"name": "North", "supervisor": None})
    assert r.status_code == 200, r.text
    r = http.put(f"{scoring}/v1/specialists/rm-1", json={"name": "Li Wei", "team_id": "rm-north"})
    assert r.status_code == 200, r.text
    r = http.post(
        f"{notify}/v1/channels",
        json={
            "name": "north hook",
            "kind": "webhook",
            "team_id": "rm-north",
            "config": {"url": receiver.url + "/hook", "secret": "rm-webhook-secret"},
        },
    )
    assert r.status_code == 201, r.text

    def failed() -> list[dict[str, Any]]:
        r = http.get(f"{notify}/v1/deliveries", params={"status": "failed", "team": "rm-north"})
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        page = browser.new_context(
            viewport={"width": 1300, "height": 850}, locale="en-US"
        ).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(f"{exc}\n{exc.stack}"))
        page.set_default_timeout(20_000)
        try:
            page.goto(scoring + "/")
            page.fill("#login-token", ADMIN_TOKEN)
            page.click("#login-form button[type=submit]")
            page.click('a[data-nav="alerts"]')

            # The reminder is relayed while the receiver answers 500: retried 3 s, then failed.
            remind()
            (delivery,) = until(failed, 60, "the reminder's delivery to fail")
            assert delivery["items"][0]["type"] == "cycle_reminder"
            tab = page.locator("#tab-deliveries")
            tab.click()
            row = page.locator(f'li[data-delivery="{delivery["id"]}"]')
            expect(row).to_have_attribute("data-status", "failed")
            expect(row).to_contain_text("north hook (webhook)")
            expect(row).to_contain_text("Li Wei · feedback meeting not held 2026Q3 (reminder)")
            page.screenshot(path=shots / "60-failed-reminder-en.png")
            page.select_option("#lang-select", "zh-CN")
            expect(row).to_contain_text("Li Wei · 反馈面谈尚未进行 2026Q3 (提醒)")
            page.screenshot(path=shots / "61-failed-reminder-zh.png")
            page.select_option("#lang-select", "en")

            switch.up = True
            row.get_by_role("button", name="Resend").click()
            expect(row).to_have_attribute("data-status", "sent", timeout=30_000)
            body = receiver.snapshot()[-1].json()
            assert (body["type"], body["kind"], body["specialist_id"]) == (
                "cycle_reminder",
                "meeting_not_held",
                "rm-1",
            )
            assert not errors, errors
        finally:
            page.screenshot(path=shots / "69-reminders-last.png")
            browser.close()
            http.close()
