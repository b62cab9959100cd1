"""The appraisal table fits the window (1400 and 1024 px wide) and marks a quarter in progress
as provisional, in English and Chinese (real services, headless Chromium)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from kpi.stack import ServiceProcess
from tests.browser.conftest import StartStack
from tests.browser.support import until, watch_csp
from tests.service_helpers import ADMIN_TOKEN, CHROMIUM_ARGS

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Long names, Chinese and Latin, as real teams have them: the widest first column it must fit.
PEOPLE = [
    ("ap-1", "欧阳娜娜 Ouyang Nana-Alexandrova"),
    ("ap-2", "Li Wei 李伟"),
    ("ap-3", "Wang Fang 王芳"),
]
SIZES = [(1400, 900), (1024, 768)]


def _csat(specialist: str, score: int) -> dict[str, Any]:
    return {
        "event_id": f"ap-{uuid.uuid4()}",
        "type": "survey.csat",
        "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
        "specialist_id": specialist,
        "score": score,
    }


async def test_the_appraisal_table_fits_and_says_provisional(
    start_stack: StartStack, shots: Path, chromium: str
) -> None:
    procs = await start_stack(["ingest", "notify", "scoring"])
    await asyncio.to_thread(journey, chromium, shots, procs)


def journey(executable: str, shots: Path, procs: dict[str, ServiceProcess]) -> None:
    from playwright.sync_api import expect, sync_playwright

    scoring, ingest = procs["scoring"].url, procs["ingest"].url
    http = httpx.Client(headers=ADMIN, timeout=10)
    r = http.put(f"{scoring}/v1/teams/ap-north", json={"name": "North 华北", "supervisor": None})
    assert r.status_code == 200, r.text
    for sid, name in PEOPLE:
        r = http.put(f"{scoring}/v1/specialists/{sid}", json={"name": name, "team_id": "ap-north"})
        assert r.status_code == 200, r.text
    r = http.post(f"{ingest}/v1/events", json=[_csat(s, 5) for s, _ in PEOPLE for _ in range(12)])
    assert r.status_code == 202, r.text

    def scored() -> bool:
        got = http.get(f"{scoring}/v1/specialists/ap-1/kpis").json()
        return bool(got["kpis"]["customer_satisfaction"]["denominator"] == 12)

    until(scored, 60, "the surveys to be scored")
    today = dt.date.fromisoformat(http.get(f"{scoring}/v1/dashboard/config").json()["today"])
    current = f"{today.year}Q{(today.month - 1) // 3 + 1}"
    last_day = dt.date(today.year, 3 * ((today.month - 1) // 3) + 1, 1) - dt.timedelta(days=1)
    previous = f"{last_day.year}Q{(last_day.month - 1) // 3 + 1}"

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            for lang, locale in (("en", "en-US"), ("zh-CN", "zh-CN")):
                for width, height in SIZES:
                    page = browser.new_context(
                        viewport={"width": width, "height": height}, locale=locale
                    ).new_page()
                    errors: list[str] = []
                    page.on("pageerror", lambda exc, seen=errors: seen.append(str(exc)))
                    csp = watch_csp(page)
                    page.set_default_timeout(20_000)
                    page.goto(scoring + "/")
                    page.select_option("#login-lang-select", lang)
                    page.fill("#login-token", ADMIN_TOKEN)
                    page.click("#login-form button[type=submit]")
                    page.goto(f"{scoring}/ui/#/appraisal?quarter={current}&team=ap-north")
                    table = page.locator("#appraisal-table")
                    expect(table).to_contain_text("Ouyang")
                    badge = page.locator("#ap-provisional")
                    expect(badge).to_be_visible()
                    expect(badge).to_contain_text("Provisional" if lang == "en" else "暂定")
                    page.screenshot(path=shots / f"50-appraisal-{lang}-{width}.png")
                    _assert_last_column_visible(page, width, height)
                    # The quarter before is over (not finalised either): not provisional.
                    page.select_option("#ap-quarter", previous)
                    # (the caption names the quarter the table shows: the new one is drawn)
                    expect(page.locator("#appraisal-table caption")).to_contain_text(previous)
                    expect(badge).to_be_hidden()
                    page.close()
                    assert not errors, errors
                    assert not csp, csp
        finally:
            browser.close()
            http.close()


def _assert_last_column_visible(page: Any, width: int, height: int) -> None:
    """Every header cell, the last (Suggested incentive) included, lies wholly inside the
    window and inside the table's scroll box as it is shown, without scrolling sideways."""
    boxes = page.evaluate(
        """() => {
          const wrap = document.querySelector('#appraisal-table').closest('.table-wrap');
          const w = wrap.getBoundingClientRect();
          const cells = [...document.querySelectorAll('#appraisal-table thead th')];
          const bar = document.querySelector('.topbar').getBoundingClientRect();
          return {wrap: [w.left, w.right], scroll: [wrap.scrollWidth, wrap.clientWidth],
                  bar: bar.bottom, top: w.top,
                  page: document.documentElement.scrollWidth,
                  cells: cells.map(c => { const r = c.getBoundingClientRect();
                                          return [c.textContent.trim(), r.left, r.right]; })};
        }"""
    )
    name, left, right = boxes["cells"][-1]
    assert left >= boxes["wrap"][0] - 1 and right <= boxes["wrap"][1] + 1, (width, boxes)
    assert right <= width, (width, name, right)
    assert boxes["scroll"][0] <= boxes["scroll"][1] + 1, (width, boxes)
    assert boxes["page"] <= width, (width, boxes)
    assert boxes["bar"] <= boxes["top"], ("the menu bar covers the table", width, boxes)
