"""The dashboard reads problem answers (RFC 9457): what it shows names the field and the reason.

The dashboard's own modules are loaded in headless Chromium against real scoring and notify
processes, and fed real error answers: scoring's, and notify's relayed by the proxy.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import StartStack
from tests.browser.support import assert_dashboard_csp, watch_csp
from tests.service_helpers import ADMIN_TOKEN, CHROMIUM_ARGS

pytestmark = pytest.mark.integration

# Calls the dashboard's api() and returns what its ApiError and error box make of the answer.
PROBE = """async ([path, method, body]) => {
  const { api, ApiError } = await import("/ui/js/api.js");
  const { errorMessage } = await import("/ui/js/views/common.js");
  try {
    await api(path, body === null ? { method } : { method, body });
    return { ok: true };
  } catch (err) {
    if (!(err instanceof ApiError)) return { thrown: String(err) };
    return { status: err.status, code: err.code, detail: err.detail, message: err.message,
             fields: err.fieldErrors.map((e) => e.field), routeMissing: err.routeMissing,
             shown: errorMessage(err) };
  }
}"""


async def test_the_dashboard_shows_a_problems_detail_and_fields(
    chromium: str, shots: Path, start_stack: StartStack
) -> None:
    services = await start_stack(["notify", "scoring"])

    def journey() -> None:
        from playwright.sync_api import expect, sync_playwright

        scoring = services["scoring"].url
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 800}, locale="en-US")
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(f"{exc}\n{exc.stack}"))
            csp = watch_csp(page)
            page.set_default_timeout(20_000)

            def probe(path: str, method: str = "GET", body: Any = None) -> dict[str, Any]:
                got: dict[str, Any] = page.evaluate(PROBE, [path, method, body])
                return got

            try:
                assert_dashboard_csp(page.goto(scoring + "/"))
                page.fill("#login-token", ADMIN_TOKEN)
                page.click("#login-form button[type=submit]")
                expect(page.locator("#whoami")).to_contain_text("bootstrap-admin")

                # An input error: every field named with its reason.
                bad = probe("/v1/leaderboard?kpi=nope&limit=0")
                assert bad["status"] == 422 and bad["fields"] == ["kpi", "limit"], bad
                assert bad["shown"].startswith("Could not load: kpi: "), bad
                assert "; limit: " in bad["shown"] and bad["message"] == bad["detail"], bad

                # Any other problem: its detail; and an unknown id is no missing route.
                unknown = probe("/v1/teams/pd-none")
                assert (unknown["status"], unknown["code"]) == (404, "not_found"), unknown
                assert unknown["detail"] == "unknown team 'pd-none'", unknown
                assert not unknown["routeMissing"], unknown
                incident = probe("/v1/platform/incidents/999999/dismiss", "POST")
                assert incident["status"] == 404 and "999999" in incident["detail"], incident
                missing = probe("/v1/no-such-route")
                assert missing["routeMissing"] and missing["code"] == "route_not_found", missing

                # notify's problem, relayed by the proxy, reads the same way.
                relayed = probe("/v1/dashboard/notify/silences", "POST", {"until": "soon"})
                assert relayed["status"] == 422 and "until" in relayed["fields"], relayed
                assert "until: " in relayed["shown"], relayed

                # The error box the views render shows it as text.
                page.evaluate(
                    """async () => {
                      const { api } = await import("/ui/js/api.js");
                      const { errorBox } = await import("/ui/js/views/common.js");
                      try { await api("/v1/leaderboard?kpi=nope"); }
                      catch (err) { document.querySelector("#main").innerHTML = errorBox(err); }
                    }"""
                )
                expect(page.locator("#main .error-box")).to_contain_text("kpi: ")
                page.screenshot(path=shots / "21-problem-error-box.png")
                assert not errors, errors
                assert not csp, csp
            finally:
                page.screenshot(path=shots / "99-problems-last.png")
                browser.close()

    await asyncio.to_thread(journey)
