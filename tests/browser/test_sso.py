"""Signing in with SSO in headless Chromium: the button, the provider's page and back (en), and
a refused user told why on the sign-in page (zh-CN), against a real OpenID Connect provider."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from kpi.stack import ServiceProcess
from shared.topics import Topics
from tests.browser.conftest import StartStack
from tests.browser.support import assert_dashboard_csp, watch_csp
from tests.oidc_provider import Provider, running_provider
from tests.service_helpers import (
    ADMIN_TOKEN,
    CHROMIUM_ARGS,
    service_env,
    wait_status,
    worker_port,
)

pytestmark = pytest.mark.integration


async def test_sign_in_with_sso(
    start_stack: StartStack,
    procs: dict[str, ServiceProcess],
    database_url: str,
    bootstrap: str,
    created_topics: Topics,
    tmp_path: Path,
    shots: Path,
    chromium: str,
) -> None:
    await start_stack(["notify"])
    with running_provider() as provider:
        # The callback URL names scoring's port, so scoring is started here on a chosen one.
        port = worker_port()
        env = service_env(
            database_url,
            bootstrap,
            KPI_TOPIC_PREFIX=created_topics.prefix,
            KPI_SCORING_PORT=str(port),
            KPI_NOTIFY_URL=procs["notify"].url,
            KPI_PUBLIC_URL=f"http://127.0.0.1:{port}",
            KPI_OIDC_ISSUER=provider.url,
            KPI_OIDC_CLIENT_ID="kpi-dashboard",
            # The provider knows confidential clients only (no token auth method "none").
            KPI_OIDC_CLIENT_SECRET="kpi client secret",
            KPI_OIDC_ROLE_MAP='{"team-leads": "supervisor"}',
            KPI_OIDC_TEAM_CLAIM="teams",
        )
        scoring = ServiceProcess("scoring", port, tmp_path / f"scoring-{port}.log", env)
        procs["scoring"] = scoring
        scoring.start()
        await asyncio.to_thread(wait_status, scoring.url + "/readyz", 200, 60)
        await asyncio.to_thread(journey, chromium, shots, scoring.url, provider)


def _setup(scoring: str, provider: Provider) -> None:
    with httpx.Client(base_url=scoring, timeout=10) as http:
        team = {"name": "North 华北", "supervisor": None}
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert http.put("/v1/teams/so-north", json=team, headers=auth).status_code == 200
    with httpx.Client(base_url=provider.url, timeout=10) as http:
        for sub, claims in (
            ("sub-ann", {"preferred_username": "ann.sso", "name": "Ann SSO",
                         "groups": ["team-leads"], "teams": ["so-north"]}),
            ("sub-mo", {"preferred_username": "mo", "groups": ["sales"]}),
        ):  # fmt: skip
            assert http.put(f"/users/{sub}", json=claims).status_code == 204


def _at_provider(page: object, sub: str) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    expect(page.locator("input[name=sub]")).to_be_visible()
    page.fill("input[name=sub]", sub)
    page.click("button:text('Authorize')")


def journey(executable: str, shots: Path, scoring: str, provider: Provider) -> None:
    from playwright.sync_api import expect, sync_playwright

    _setup(scoring, provider)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US")
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(f"{exc}\n{exc.stack}"))
            csp = watch_csp(page)
            page.set_default_timeout(20_000)
            assert_dashboard_csp(page.goto(scoring + "/"))
            expect(page.locator("#sso-login")).to_have_text("Sign in with SSO")
            expect(page.locator("#signin-form")).to_be_visible()  # the password form stays
            page.screenshot(path=shots / "sso-01-signin-en.png")
            page.click("#sso-login")
            page.wait_for_url(provider.url + "/oauth2/authorize?*")
            _at_provider(page, "sub-ann")
            expect(page.locator("#whoami")).to_have_text("Signed in as Ann SSO · supervisor")
            assert page.url == scoring + "/ui/"
            assert any(c["name"] == "kpi_session" for c in context.cookies())
            page.screenshot(path=shots / "sso-02-signed-in.png")
            page.click("#logout")
            expect(page.locator("#sso-login")).to_be_visible()

            # zh-CN: a user whose groups map to no role is told why on the sign-in page.
            zh = browser.new_context(viewport={"width": 1200, "height": 800}, locale="zh-CN")
            page = zh.new_page()
            page.on("pageerror", lambda exc: errors.append(f"{exc}\n{exc.stack}"))
            csp += watch_csp(page)
            page.set_default_timeout(20_000)
            page.goto(scoring + "/")
            page.select_option("#login-lang-select", "zh-CN")
            expect(page.locator("#sso-login")).to_have_text("使用单点登录（SSO）")
            page.click("#sso-login")
            _at_provider(page, "sub-mo")
            expect(page.locator("#signin-error")).to_contain_text("没有可访问本看板的组或角色")
            assert "sso_error" not in page.url  # read once, then taken off the address
            assert not any(c["name"] == "kpi_session" for c in zh.cookies())
            page.screenshot(path=shots / "sso-03-refused-zh.png")
            assert not errors, errors
            assert not csp, csp
        finally:
            browser.close()
