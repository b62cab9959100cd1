"""A delivery that fails on the dashboard, resent once the receiver is back (real services)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from kpi.stack import ServiceProcess
from shared.topics import Topics
from tests.browser.conftest import StartStack
from tests.browser.support import assert_dashboard_csp, until, watch_csp
from tests.integration.notify_support import Receiver, Switch, snapshot
from tests.kafka_helpers import produce
from tests.service_helpers import (
    ADMIN_TOKEN,
    CHROMIUM_ARGS,
)

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_a_failed_delivery_is_listed_and_resent_from_the_dashboard(
    bootstrap: str,
    created_topics: Topics,
    start_stack: StartStack,
    shots: Path,
    chromium: str,
) -> None:
    procs = await start_stack(
        ["notify", "scoring"],
        # A budget of seconds instead of a day, so the delivery fails while we watch.
        KPI_NOTIFY_RETRY_FOR="3s",
        KPI_NOTIFY_RETRY_BASE_SECONDS="0.2",
        KPI_NOTIFY_RETRY_MAX_SECONDS="0.5",
    )
    switch = Switch()
    receiver = Receiver(behaviour=switch).start()
    loop = asyncio.get_running_loop()

    def fire_alert() -> None:
        # Playwright's sync API owns the journey thread's loop: produce on the test's loop.
        message = orjson.dumps(snapshot("fd-1", dt.datetime.now(dt.UTC), csat=0.5))
        send = produce(bootstrap, created_topics.scores, [message], key=lambda v: b"fd-1")
        asyncio.run_coroutine_threadsafe(send, loop).result(30)

    try:
        await asyncio.to_thread(journey, chromium, shots, procs, receiver, switch, fire_alert)
    finally:
        receiver.stop()


def journey(
    executable: str,
    shots: Path,
    procs: dict[str, ServiceProcess],
    receiver: Receiver,
    switch: Switch,
    fire_alert: Callable[[], None],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    scoring, notify = procs["scoring"].url, procs["notify"].url
    http = httpx.Client(headers=ADMIN, timeout=10)
    r = http.put(f"{scoring}/v1/teams/fd-north", json={"name": "North 华北", "supervisor": None})
    assert r.status_code == 200, r.text
    r = http.put(f"{scoring}/v1/specialists/fd-1", json={"name": "Li Wei", "team_id": "fd-north"})
    assert r.status_code == 200, r.text
    r = http.post(
        f"{notify}/v1/channels",
        json={
            "name": "ops webhook",
            "kind": "webhook",
            "config": {"url": receiver.url + "/hook", "secret": "fd-webhook-secret"},
        },
    )
    assert r.status_code == 201, r.text

    def failed() -> list[dict[str, Any]]:
        r = http.get(f"{notify}/v1/deliveries", params={"status": "failed"})
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
        csp = watch_csp(page)
        page.set_default_timeout(20_000)
        try:
            assert_dashboard_csp(page.goto(scoring + "/"))
            page.fill("#login-token", ADMIN_TOKEN)
            page.click("#login-form button[type=submit]")
            page.click('a[data-nav="alerts"]')
            tab = page.locator("#tab-deliveries")
            tab.click()
            expect(page.locator("#dl-empty")).to_contain_text("No failed deliveries")

            # An alert fires while the receiver answers 500: retried for 3 s, then failed.
            fire_alert()
            (delivery,) = until(failed, 60, "the delivery to fail")
            refused = [r.headers["X-KPI-Delivery"] for r in receiver.snapshot()]
            assert len(refused) == delivery["attempts"] >= 2

            tab.click()  # reload the list
            row = page.locator(f'li[data-delivery="{delivery["id"]}"]')
            expect(row).to_have_attribute("data-status", "failed")
            expect(row).to_contain_text("ops webhook (webhook)")
            expect(row).to_contain_text("Li Wei · Customer satisfaction (firing)")
            expect(row).to_contain_text("HTTP 500")
            expect(row).to_contain_text(f"{delivery['attempts']} attempts")
            expect(page.locator("#dl-count")).to_have_text("1")
            page.screenshot(path=shots / "20-failed-delivery.png")
            page.select_option("#lang-select", "zh-CN")
            expect(page.locator("#tab-deliveries")).to_contain_text("发送失败")
            expect(row).to_contain_text("重新发送")
            page.select_option("#lang-select", "en")

            # The receiver is fixed; Resend delivers it under the same delivery key.
            switch.up = True
            row.get_by_role("button", name="Resend").click()
            expect(row).to_have_attribute("data-status", "sent", timeout=30_000)
            expect(row).to_contain_text("Delivered")
            page.screenshot(path=shots / "21-resent-delivery.png")
            got = receiver.snapshot()
            assert len(got) == len(refused) + 1
            assert {r.headers["X-KPI-Delivery"] for r in got} == {delivery["delivery_key"]}
            assert failed() == []
            assert not errors, errors
            assert not csp, csp
        finally:
            page.screenshot(path=shots / "29-deliveries-last.png")
            browser.close()
            http.close()
