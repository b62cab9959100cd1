"""A team digest whose delivery fails is named on the dashboard's failed-deliveries list in
en and zh-CN, and resent from there (real notify and scoring, real PostgreSQL)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from kpi.stack import ServiceProcess
from tests.browser.conftest import StartStack
from tests.browser.support import until
from tests.integration.notify_support import Receiver, Switch
from tests.service_helpers import ADMIN_TOKEN, CHROMIUM_ARGS

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PERIOD = "2026-W40"


async def test_a_failed_digest_delivery_is_named_and_resent(
    start_stack: StartStack, shots: Path, chromium: str
) -> None:
    procs = await start_stack(
        ["notify", "scoring"],
        KPI_NOTIFY_RETRY_FOR="3s",
        KPI_NOTIFY_RETRY_BASE_SECONDS="0.2",
        KPI_NOTIFY_RETRY_MAX_SECONDS="0.5",
        KPI_NOTIFY_TICK_SECONDS="1",
        KPI_DIGEST_SCHEDULE="off",  # only the admin's send below
    )
    switch = Switch()
    receiver = Receiver(behaviour=switch).start()
    try:
        await asyncio.to_thread(journey, chromium, shots, procs, receiver, switch)
    finally:
        receiver.stop()


def journey(
    executable: str,
    shots: Path,
    procs: dict[str, ServiceProcess],
    receiver: Receiver,
    switch: Switch,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    scoring, notify = procs["scoring"].url, procs["notify"].url
    http = httpx.Client(headers=ADMIN, timeout=10)
    r = http.put(f"{scoring}/v1/teams/dg-north", json={"name": "North", "supervisor": None})
    assert r.status_code == 200, r.text
    r = http.put(f"{scoring}/v1/specialists/dg-1", json={"name": "王芳", "team_id": "dg-north"})
    assert r.status_code == 200, r.text
    r = http.post(
        f"{notify}/v1/channels",
        json={
            "name": "north hook",
            "kind": "webhook",
            "team_id": "dg-north",
            "config": {"url": receiver.url + "/hook", "secret": "dg-webhook-secret"},
        },
    )
    assert r.status_code == 201, r.text

    def failed() -> list[dict[str, Any]]:
        r = http.get(f"{notify}/v1/deliveries", params={"status": "failed", "team": "dg-north"})
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

            # Sent while the receiver answers 500: retried 3 s, then failed.
            r = http.post(f"{scoring}/v1/teams/dg-north/digest/send", params={"period": PERIOD})
            assert r.status_code == 200 and r.json()["recorded"] is True, r.text
            (delivery,) = until(failed, 60, "the digest's delivery to fail")
            assert delivery["items"][0]["type"] == "team_digest"
            page.locator("#tab-deliveries").click()
            row = page.locator(f'li[data-delivery="{delivery["id"]}"]')
            expect(row).to_have_attribute("data-status", "failed")
            expect(row).to_contain_text("north hook (webhook)")
            expect(row).to_contain_text(f"Team digest {PERIOD} (digest)")
            page.screenshot(path=shots / "70-failed-digest-en.png")
            page.select_option("#lang-select", "zh-CN")
            expect(row).to_contain_text(f"团队汇总 {PERIOD} (周期汇总)")
            page.screenshot(path=shots / "71-failed-digest-zh.png")
            page.select_option("#lang-select", "en")

            switch.up = True
            row.get_by_role("button", name="Resend").click()
            expect(row).to_have_attribute("data-status", "sent", timeout=30_000)
            body = receiver.snapshot()[-1].json()
            assert (body["type"], body["kind"], body["team_id"]) == (
                "team_digest",
                "digest",
                "dg-north",
            )
            assert body["period"]["name"] == PERIOD
            assert not errors, errors
        finally:
            page.screenshot(path=shots / "79-digests-last.png")
            browser.close()
            http.close()
