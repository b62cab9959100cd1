"""Signing in with a username and password in headless Chromium (en and zh-CN), the lockout
message, signing out, and the admin's "Users & tokens" screen."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from kpi.stack import ServiceProcess
from tests.browser.conftest import StartStack
from tests.browser.support import assert_dashboard_csp, watch_csp
from tests.service_helpers import ADMIN_TOKEN, CHROMIUM_ARGS

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FAST_HASH = {
    "KPI_PASSWORD_TIME_COST": "1",
    "KPI_PASSWORD_MEMORY_KIB": "8192",
    "KPI_PASSWORD_PARALLELISM": "1",
}
ANN_PASSWORD = "ann's passphrase 2026"
ADMIN_PASSWORD = "管理员的密码 is long enough"


async def test_sign_in_sign_out_and_users_screen(
    start_stack: StartStack, shots: Path, chromium: str
) -> None:
    procs = await start_stack(["notify", "scoring"], **FAST_HASH)
    await asyncio.to_thread(journey, chromium, shots, procs)


def _setup(scoring: str) -> None:
    with httpx.Client(base_url=scoring, headers=ADMIN, timeout=10) as http:
        r = http.put("/v1/teams/si-north", json={"name": "North 华北", "supervisor": None})
        assert r.status_code == 200, r.text
        for body in (
            {"username": "ann", "password": ANN_PASSWORD, "role": "supervisor",
             "team_ids": ["si-north"], "display_name": "Ann Lee"},
            {"username": "wang.admin", "password": ADMIN_PASSWORD, "role": "admin",
             "display_name": "王管理"},
            {"username": "locked", "password": ANN_PASSWORD, "role": "supervisor"},
        ):  # fmt: skip
            r = http.post("/v1/users", json=body)
            assert r.status_code == 201, r.text


def journey(executable: str, shots: Path, procs: dict[str, ServiceProcess]) -> None:
    from playwright.sync_api import expect, sync_playwright

    scoring = procs["scoring"].url
    _setup(scoring)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            # --- English: a supervisor signs in, reloads, signs out ---------------------
            context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US")
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(f"{exc}\n{exc.stack}"))
            csp = watch_csp(page)
            page.set_default_timeout(20_000)
            assert_dashboard_csp(page.goto(scoring + "/"))
            expect(page.locator("#signin-form")).to_be_visible()
            expect(page.locator("label[for=login-username]")).to_have_text("Username")
            expect(page.locator("#sso")).to_be_hidden()  # no single sign-on configured here
            page.screenshot(path=shots / "signin-01-en.png")
            page.fill("#login-username", "ann")
            page.fill("#login-password", "not her password")
            page.click("#signin-form button[type=submit]")
            expect(page.locator("#signin-error")).to_have_text("Wrong username or password.")
            page.fill("#login-username", "ANN")  # logins ignore case
            page.fill("#login-password", ANN_PASSWORD)
            page.click("#signin-form button[type=submit]")
            expect(page.locator("#whoami")).to_have_text("Signed in as Ann Lee · supervisor")
            expect(page.locator("#shell")).to_be_visible()
            expect(page.locator('[data-nav="users"]')).to_be_hidden()  # not an admin
            cookie = next(c for c in context.cookies() if c["name"] == "kpi_session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/"
            assert page.evaluate("document.cookie") == ""  # out of the page's reach
            assert page.evaluate("sessionStorage.getItem('kpi.token')") is None
            page.screenshot(path=shots / "signin-02-en-signed-in.png")
            page.reload()  # the cookie carries the session across a reload
            expect(page.locator("#whoami")).to_have_text("Signed in as Ann Lee · supervisor")
            page.click("#logout")
            expect(page.locator("#signin-form")).to_be_visible()
            assert not [c for c in context.cookies() if c["name"] == "kpi_session"]
            page.reload()
            expect(page.locator("#signin-form")).to_be_visible()
            page.screenshot(path=shots / "signin-03-en-signed-out.png")

            # Five wrong passwords lock the username out for a while: said so, with time.
            for n in range(5):
                page.fill("#login-username", "locked")
                page.fill("#login-password", f"wrong password number {n}")
                page.click("#signin-form button[type=submit]")
                expect(page.locator("#signin-error")).to_have_text("Wrong username or password.")
                page.evaluate("document.querySelector('#signin-error').textContent = ''")
            page.fill("#login-password", ANN_PASSWORD)
            page.click("#signin-form button[type=submit]")
            expect(page.locator("#signin-error")).to_contain_text("Too many failed sign-ins")
            expect(page.locator("#signin-error")).to_contain_text("minute")
            page.screenshot(path=shots / "signin-04-en-locked.png")
            assert not errors and not csp, (errors, csp)
            context.close()

            # --- 简体中文: an admin signs in, manages users and tokens, signs out ----------
            context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(f"{exc}\n{exc.stack}"))
            csp = watch_csp(page)
            page.set_default_timeout(20_000)
            page.goto(scoring + "/")
            expect(page.locator("label[for=login-username]")).to_have_text("用户名")
            page.fill("#login-username", "wang.admin")
            page.fill("#login-password", "错误的密码也足够长")
            page.click("#signin-form button[type=submit]")
            expect(page.locator("#signin-error")).to_have_text("用户名或密码错误。")
            page.screenshot(path=shots / "signin-05-zh.png")
            page.fill("#login-password", ADMIN_PASSWORD)
            page.click("#signin-form button[type=submit]")
            expect(page.locator("#whoami")).to_have_text("当前用户：王管理 · 管理员")
            page.click('[data-nav="users"]')
            users = page.locator("#users-table")
            expect(users.locator('tr[data-user="ann"]')).to_contain_text("主管")

            # A new specialist account, then disabled (every POST/PUT carries the CSRF token).
            page.fill("#nu-username", "li.na")
            page.fill("#nu-display", "李娜")
            page.select_option("#nu-role", "specialist")
            page.fill("#nu-specialist", "li.na")
            page.fill("#nu-password", "short")
            page.click("#us-new button[type=submit]")
            expect(page.locator("#us-new-error")).to_contain_text("password")
            page.fill("#nu-password", "李娜的密码足够长了吧对不对")
            page.click("#us-new button[type=submit]")
            row = users.locator('tr[data-user="li.na"]')
            expect(row).to_contain_text("专员")
            row.get_by_role("button", name="停用").click()
            expect(row).to_have_attribute("data-state", "disabled")

            # A token shown once, then revoked.
            page.select_option("#nt-role", "service")
            page.fill("#nt-subject", "zendesk")
            page.select_option("#nt-expires", "30d")
            page.click("#tk-new button[type=submit]")
            secret = page.locator("#tk-secret")
            expect(page.locator("#tk-created")).to_contain_text("只显示这一次")
            token = secret.input_value()
            assert token.startswith("kpi_"), token
            headers = {"Authorization": f"Bearer {token}"}
            assert httpx.get(scoring + "/v1/whoami", headers=headers).status_code == 200
            page.screenshot(path=shots / "signin-06-zh-users.png", full_page=True)
            tokens = page.locator("#tokens-table")
            tokens.locator('tr[data-state="active"]', has_text="zendesk").get_by_role(
                "button", name="吊销"
            ).click()
            expect(tokens.locator('tr[data-state="revoked"]', has_text="zendesk")).to_have_count(1)
            assert httpx.get(scoring + "/v1/whoami", headers=headers).status_code == 401

            page.click("#logout")
            expect(page.locator("#signin-form button[type=submit]")).to_have_text("登录")
            page.screenshot(path=shots / "signin-07-zh-signed-out.png")
            assert not errors and not csp, (errors, csp)
            context.close()
        finally:
            browser.close()
