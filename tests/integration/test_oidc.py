"""Single sign-on against a real OpenID Connect provider (oidc-provider-mock on a loopback
port): the authorization code flow with PKCE through scoring's app, claims to roles, teams and
specialist ids, and every refusal (unmapped role, wrong state, nonce, audience, signature,
PKCE, provider down, disabled or taken account) answered on the sign-in page, never a 500."""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.scoring.app import build_app
from shared.db import create_engine
from shared.embedded import EmbeddedPostgres
from shared.kafka import ensure_topics
from shared.settings import load_settings
from shared.topics import Topics
from tests.oidc_provider import Provider, running_provider, s256
from tests.service_helpers import ADMIN_TOKEN, worker_port

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SCORING = "http://scoring"
CLIENT_ID = "kpi-dashboard"
ROLE_MAP = '{"kpi-admins": "admin", "team-leads": "supervisor", "agents": "specialist"}'
FAST_HASH = {"password_time_cost": 1, "password_memory_kib": 8192, "password_parallelism": 1}


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with running_provider() as running:
        yield running


async def _app(database_url: str, bootstrap: str, issuer: str, **overrides: Any) -> FastAPI:
    topics = Topics(f"t{uuid.uuid4().hex[:10]}.")
    await ensure_topics(bootstrap, 1, topics.all)
    settings = load_settings(
        database_url=database_url,
        kafka_bootstrap=bootstrap,
        bootstrap_admin_token=ADMIN_TOKEN,
        topic_prefix=topics.prefix,
        scoring_session_timeout_ms=1000,
        auth_cache_seconds=0,
        oidc_issuer=issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret="kpi client secret",
        public_url=SCORING,  # the callback URL is derived from it
        oidc_role_map=ROLE_MAP,
        oidc_team_claim="teams",
        oidc_specialist_claim="agent_id",
        **{**FAST_HASH, **overrides},
    )
    return build_app(settings)


@pytest.fixture(scope="module")
async def app(database_url: str, bootstrap: str, provider: Provider) -> AsyncIterator[FastAPI]:
    scoring = await _app(database_url, bootstrap, provider.url)
    async with scoring.router.lifespan_context(scoring):
        yield scoring


@pytest.fixture
async def browser(
    app: FastAPI, clean_db: AsyncEngine, provider: Provider
) -> AsyncIterator[Browser]:
    provider.layer.fail_token = None
    provider.layer.rewrite_token = None
    async with Browser(app, provider) as b:
        yield b


class Browser:
    """One browser: scoring's app in-process, the provider over loopback HTTP, each with its
    own cookies; redirects are followed by hand, as a browser would."""

    def __init__(self, app: FastAPI, provider: Provider) -> None:
        self.provider = provider
        self.scoring = AsyncClient(
            transport=ASGITransport(app=app, client=("127.0.0.1", 40000)), base_url=SCORING
        )
        self.idp = httpx.AsyncClient(timeout=10)

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.scoring.aclose()
        await self.idp.aclose()

    async def start(self) -> str:
        """Click "Sign in with SSO": the provider's authorization URL scoring redirects to."""
        r = await self.scoring.get("/v1/auth/oidc/login")
        assert r.status_code == 302, r.text
        cookie = r.headers["set-cookie"]
        assert "kpi_oidc=" in cookie and "HttpOnly" in cookie, cookie
        assert "Path=/v1/auth/oidc" in cookie and "SameSite=lax" in cookie, cookie
        location = r.headers["location"]
        assert location.startswith(self.provider.url + "/oauth2/authorize?"), location
        return location

    async def authorize(self, url: str, sub: str) -> str:
        """At the provider: open its form, enter the user's sub, submit; where it redirects."""
        form = await self.idp.get(url)
        assert form.status_code == 200 and 'name="sub"' in form.text, form.text[:500]
        r = await self.idp.post(url, data={"sub": sub})
        assert r.status_code == 302, r.text[:500]
        location = r.headers["location"]
        assert location.startswith(SCORING + "/v1/auth/oidc/callback?"), location
        return location

    async def callback(self, url: str) -> httpx.Response:
        parts = urlsplit(url)
        return await self.scoring.get(parts.path + "?" + parts.query)

    async def sign_in(self, sub: str) -> httpx.Response:
        return await self.callback(await self.authorize(await self.start(), sub))


async def set_user(provider: Provider, sub: str, **claims: Any) -> None:
    """The user as the provider knows them (its own API: PUT /users/{sub})."""
    async with httpx.AsyncClient() as http:
        r = await http.put(f"{provider.url}/users/{sub}", json=claims)
        assert r.status_code == 204, r.text


def refused_with(response: httpx.Response, code: str) -> None:
    assert response.status_code == 303, (response.status_code, response.text)
    assert response.headers["location"] == f"{SCORING}/ui/?sso_error={code}", response.headers
    assert "kpi_session=" not in response.headers.get("set-cookie", ""), response.headers


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return urlunsplit(parts._replace(query=urlencode({**query, **changes})))


def session_headers(response: httpx.Response) -> dict[str, str]:
    session = response.cookies["kpi_session"]
    return {"Cookie": f"kpi_session={session}"}


async def test_methods_tell_the_sign_in_page_sso_is_on(browser: Browser) -> None:
    r = await browser.scoring.get("/v1/auth/methods")  # no credentials
    assert r.status_code == 200, r.text
    assert r.json() == {"password": True, "sso": True, "sso_login_url": "/v1/auth/oidc/login"}


async def test_code_flow_with_pkce_signs_a_supervisor_in(
    browser: Browser, provider: Provider, clean_db: AsyncEngine
) -> None:
    await set_user(
        provider, "sub-ann", preferred_username="ann.lee", email="ann@example.com",
        name="Ann Lee 李", groups=["staff", "team-leads"], teams=["north", "south"],
    )  # fmt: skip
    authorize = await browser.start()
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == [SCORING + "/v1/auth/oidc/callback"]
    callback = await browser.authorize(authorize, "sub-ann")
    r = await browser.callback(callback)
    assert r.status_code == 302 and r.headers["location"] == SCORING + "/ui/", r.text
    cookies = r.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("kpi_session="))
    assert "HttpOnly" in session and "SameSite=lax" in session and "Path=/" in session
    assert any(c.startswith('kpi_oidc=""') or c.startswith("kpi_oidc=;") for c in cookies), cookies

    # The token request carried the verifier of the challenge, and the client's secret.
    token_request = provider.layer.token_requests[-1]
    assert s256(token_request["code_verifier"]) == query["code_challenge"][0]
    basic = base64.b64decode(token_request["authorization"].removeprefix("Basic ")).decode()
    assert basic == f"{CLIENT_ID}:kpi+client+secret"  # form-encoded first (RFC 6749 2.3.1)

    headers = session_headers(r)
    me = await browser.scoring.get("/v1/auth/session", headers=headers)
    assert me.status_code == 200, me.text
    body = me.json()
    assert (body["role"], body["subject"], body["team_ids"]) == (
        "supervisor", "ann.lee", ["north", "south"],
    )  # fmt: skip
    assert body["user"]["display_name"] == "Ann Lee 李" and body["user"]["sso"] is True
    # The same session as a password gives: protected routes, CSRF on changes, sign-out.
    assert (await browser.scoring.get("/v1/teams", headers=headers)).status_code == 200
    assert (await browser.scoring.get("/v1/users", headers=headers)).status_code == 403
    no_csrf = await browser.scoring.post("/v1/auth/logout", headers=headers)
    assert no_csrf.status_code == 403
    # An SSO account has no password: signing in with one, or changing it, is refused.
    pw = {"username": "ann.lee", "password": "any password at all"}
    assert (await browser.scoring.post("/v1/auth/login", json=pw)).status_code == 401
    csrf = {**headers, "X-CSRF-Token": body["csrf_token"]}
    change = {"current_password": "x" * 12, "new_password": "y" * 12}
    changed = await browser.scoring.post("/v1/auth/password", json=change, headers=csrf)
    assert changed.status_code == 403 and "single sign-on" in changed.text
    reset = await browser.scoring.post(
        "/v1/users/ann.lee/password", json={"password": "z" * 12}, headers=ADMIN
    )
    assert reset.status_code == 422 and "password" in reset.text
    assert (await browser.scoring.post("/v1/auth/logout", headers=csrf)).status_code == 204
    assert (await browser.scoring.get("/v1/teams", headers=headers)).status_code == 401

    # The callback is answered once: the same URL again finds no sign-in under way.
    refused_with(await browser.callback(callback), "state")
    async with clean_db.connect() as conn:
        left = await conn.scalar(text("SELECT count(*) FROM oidc_logins"))
        row = (
            await conn.execute(text("SELECT password_hash, sso_issuer, sso_subject FROM users"))
        ).one()
    assert left == 0
    assert tuple(row) == (None, provider.url, "sub-ann")


async def test_claims_change_the_account_at_the_next_sign_in(
    browser: Browser, provider: Provider
) -> None:
    await set_user(provider, "sub-li", preferred_username="li.na", groups=["team-leads"])
    r = await browser.sign_in("sub-li")
    me = await browser.scoring.get("/v1/auth/session", headers=session_headers(r))
    assert me.json()["role"] == "supervisor" and me.json()["team_ids"] == []

    # Now an agent: the same account (by issuer and sub), bound to the specialist id.
    await set_user(
        provider, "sub-li", preferred_username="li.na.renamed", groups="agents", agent_id="s-43"
    )
    r = await browser.sign_in("sub-li")
    headers = session_headers(r)
    me = (await browser.scoring.get("/v1/auth/session", headers=headers)).json()
    assert (me["role"], me["subject"], me["specialist_id"]) == ("specialist", "s-43", "s-43")
    assert me["user"]["username"] == "li.na"  # the login stays what it was made as
    assert (await browser.scoring.get("/v1/teams", headers=headers)).status_code == 403
    users = (await browser.scoring.get("/v1/users", headers=ADMIN)).json()["users"]
    assert [(u["username"], u["role"], u["sso"]) for u in users] == [("li.na", "specialist", True)]

    # Admins outrank: a user in both groups is an admin.
    await set_user(provider, "sub-root", email="root@example.com", groups=["agents", "kpi-admins"])
    r = await browser.sign_in("sub-root")
    me = (await browser.scoring.get("/v1/auth/session", headers=session_headers(r))).json()
    assert (me["role"], me["subject"]) == ("admin", "root@example.com")  # email: no username


async def test_a_user_whose_claims_map_to_no_role_is_refused(
    browser: Browser, provider: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    await set_user(provider, "sub-x", preferred_username="mallory", groups=["sales", "中文组"])
    with caplog.at_level(logging.WARNING, logger="services.scoring.api.sso"):
        refused_with(await browser.sign_in("sub-x"), "unmapped")
    assert "'groups'" in caplog.text and "KPI_OIDC_ROLE_MAP" in caplog.text, caplog.text
    # A specialist without the claim of their specialist id is refused too, naming it.
    await set_user(provider, "sub-y", preferred_username="yan", groups=["agents"])
    with caplog.at_level(logging.WARNING, logger="services.scoring.api.sso"):
        refused_with(await browser.sign_in("sub-y"), "claims")
    assert "'agent_id'" in caplog.text
    users = (await browser.scoring.get("/v1/users", headers=ADMIN)).json()["users"]
    assert users == []


async def test_a_wrong_state_or_another_browser_is_refused(
    browser: Browser, provider: Provider, app: FastAPI
) -> None:
    await set_user(provider, "sub-s", preferred_username="sam", groups=["kpi-admins"])
    callback = await browser.authorize(await browser.start(), "sub-s")
    refused_with(await browser.callback(with_query(callback, state="forged")), "state")
    # The sign-in was used up by the refused callback: the genuine one now fails as well.
    refused_with(await browser.callback(callback), "state")
    # A callback carried to another browser (login CSRF) finds no sign-in there.
    callback = await browser.authorize(await browser.start(), "sub-s")
    async with Browser(app, provider) as other:
        refused_with(await other.callback(callback), "state")
    # The user clicked "Deny": this provider's answer omits the state (RFC 6749 4.1.2.1 wants
    # it), so it is not believed; with the state, the refusal is named as the provider's.
    denied = await browser.idp.post(await browser.start(), data={"action": "deny"})
    assert "state=" not in denied.headers["location"]
    refused_with(await browser.callback(denied.headers["location"]), "state")
    authorize = await browser.start()
    denied = await browser.idp.post(authorize, data={"action": "deny"})
    state = parse_qs(urlsplit(authorize).query)["state"][0]
    refused_with(
        await browser.callback(with_query(denied.headers["location"], state=state)), "denied"
    )


async def test_odd_callbacks_are_refused_never_500(browser: Browser) -> None:
    # Percent-encoded NUL, a control character, a lone surrogate and a broken escape; CJK,
    # a bidi override (sent UTF-8 encoded), a huge value, one that looks like more parameters.
    odd = ["", "%00", "%01", "%ED%A0%80", "%", "中文", "\u202e", "x" * 5000, "a&b=c"]
    for value in odd:
        query = f"code={value}&state={value}&error={value}&error_description={value}"
        refused_with(await browser.scoring.get(f"/v1/auth/oidc/callback?{query}"), "state")
        await browser.start()  # a sign-in under way: the odd state is compared with it
        refused_with(await browser.scoring.get(f"/v1/auth/oidc/callback?{query}"), "state")
    browser.scoring.cookies.clear()
    for cookie in ("", "%00", "x" * 4000, "a;b", '"quoted"', "\\\\", "%E4%B8%AD"):
        headers = {"Cookie": f"kpi_oidc={cookie}"}
        r = await browser.scoring.get("/v1/auth/oidc/callback?code=c&state=s", headers=headers)
        refused_with(r, "state")


async def test_an_id_token_with_another_nonce_is_refused(
    browser: Browser, provider: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    await set_user(provider, "sub-n", preferred_username="nina", groups=["kpi-admins"])
    # The browser's authorization request is altered on the way: the provider signs the
    # nonce it was given, which is not the one this sign-in keeps.
    authorize = with_query(await browser.start(), nonce="replayed-nonce")
    with caplog.at_level(logging.WARNING, logger="services.scoring.api.sso"):
        refused_with(await browser.callback(await browser.authorize(authorize, "sub-n")), "token")
    assert "'nonce'" in caplog.text, caplog.text


async def test_an_id_token_for_another_client_is_refused(
    browser: Browser, provider: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    await set_user(provider, "sub-a", preferred_username="alex", groups=["kpi-admins"])
    authorize = await browser.start()
    nonce = parse_qs(urlsplit(authorize).query)["nonce"][0]
    # A genuine ID token the provider signed for another client (same user, same nonce) ...
    other = with_query(authorize, client_id="another-app", code_challenge="", state="x")
    other = other.replace("&code_challenge=&", "&")
    code = parse_qs(urlsplit(await browser.authorize(other, "sub-a")).query)["code"][0]
    async with httpx.AsyncClient() as http:
        r = await http.post(
            provider.url + "/oauth2/token",
            data={"grant_type": "authorization_code", "code": code, "client_id": "another-app",
                  "client_secret": "x", "redirect_uri": SCORING + "/v1/auth/oidc/callback"},
        )  # fmt: skip
    assert r.status_code == 200, r.text
    foreign = r.json()["id_token"]
    assert nonce in base64.urlsafe_b64decode(foreign.split(".")[1] + "==").decode()
    # ... handed to scoring in place of its own.
    provider.layer.rewrite_token = lambda answer: {**answer, "id_token": foreign}
    with caplog.at_level(logging.WARNING, logger="services.scoring.api.sso"):
        refused_with(await browser.callback(await browser.authorize(authorize, "sub-a")), "token")
    assert "'aud'" in caplog.text, caplog.text


async def test_an_altered_signature_is_refused(browser: Browser, provider: Provider) -> None:
    await set_user(provider, "sub-g", preferred_username="gus", groups=["kpi-admins"])

    def flip(answer: dict[str, Any]) -> dict[str, Any]:
        head, body, signature = answer["id_token"].split(".")
        changed = ("A" if signature[5] != "A" else "B").join((signature[:5], signature[6:]))
        return {**answer, "id_token": f"{head}.{body}.{changed}"}

    provider.layer.rewrite_token = flip
    refused_with(await browser.sign_in("sub-g"), "token")


async def test_a_substituted_pkce_challenge_fails_the_code_exchange(
    browser: Browser, provider: Provider
) -> None:
    await set_user(provider, "sub-p", preferred_username="pat", groups=["kpi-admins"])
    # Someone who swaps the challenge for their own cannot make scoring's verifier fit it.
    authorize = with_query(await browser.start(), code_challenge=s256("b" * 43))
    refused_with(await browser.callback(await browser.authorize(authorize, "sub-p")), "provider")
    assert provider.layer.token_requests[-1]["code_verifier"]


async def test_a_failing_token_endpoint_is_named_on_the_sign_in_page(
    browser: Browser, provider: Provider
) -> None:
    await set_user(provider, "sub-f", preferred_username="fay", groups=["kpi-admins"])
    provider.layer.fail_token = 503
    refused_with(await browser.sign_in("sub-f"), "provider")


async def test_a_disabled_account_stays_blocked(browser: Browser, provider: Provider) -> None:
    await set_user(provider, "sub-d", preferred_username="dora", groups=["team-leads"])
    r = await browser.sign_in("sub-d")
    headers = session_headers(r)
    assert (await browser.scoring.get("/v1/teams", headers=headers)).status_code == 200
    disable = await browser.scoring.put("/v1/users/dora", json={"disabled": True}, headers=ADMIN)
    assert disable.status_code == 200, disable.text
    assert (await browser.scoring.get("/v1/teams", headers=headers)).status_code == 401
    refused_with(await browser.sign_in("sub-d"), "disabled")


async def test_a_username_of_a_local_account_is_never_taken_over(
    browser: Browser, provider: Provider
) -> None:
    local = {"username": "Boss", "password": "the boss's password", "role": "supervisor"}
    assert (await browser.scoring.post("/v1/users", json=local, headers=ADMIN)).status_code == 201
    await set_user(provider, "sub-b", preferred_username="boss", groups=["kpi-admins"])
    refused_with(await browser.sign_in("sub-b"), "taken")
    users = (await browser.scoring.get("/v1/users", headers=ADMIN)).json()["users"]
    assert [(u["username"], u["role"], u["sso"]) for u in users] == [("Boss", "supervisor", False)]


async def test_a_provider_that_cannot_be_reached_is_named(
    database_url: str, bootstrap: str, clean_db: AsyncEngine
) -> None:
    down = await _app(database_url, bootstrap, f"http://127.0.0.1:{worker_port()}")
    async with down.router.lifespan_context(down):
        transport = ASGITransport(app=down, client=("127.0.0.1", 40000))
        async with AsyncClient(transport=transport, base_url=SCORING) as client:
            refused_with(await client.get("/v1/auth/oidc/login"), "provider")
            refused_with(await client.get("/v1/auth/oidc/callback?code=c&state=s"), "state")


def test_migration_0015_downgrades_keeping_sso_accounts(pg_server: EmbeddedPostgres) -> None:
    from alembic import command

    from migrations import alembic_config, upgrade

    url = pg_server.create_database(f"kpi_m15_{uuid.uuid4().hex[:8]}")
    upgrade(url, "0015")

    async def run(*statements: str) -> list[Any]:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                results = [await conn.execute(text(sql)) for sql in statements]
                return [r.all() if r.returns_rows else [] for r in results]
        finally:
            await engine.dispose()

    sso_user = (
        "INSERT INTO users (id, username, username_key, role, sso_issuer, sso_subject) "
        "VALUES (gen_random_uuid(), 'ann', 'ann', 'admin', 'https://id', 's-1') RETURNING id"
    )
    asyncio.run(run(sso_user))
    asyncio.run(
        run(
            "INSERT INTO user_sessions (id_hash, user_id, expires_at) "
            "SELECT 'h', id, now() + interval '1 hour' FROM users"
        )
    )
    # Neither a password nor an SSO identity, or half an identity: refused by the database.
    for bad in ("NULL, NULL", "NULL, 's-2'"):
        with pytest.raises(Exception, match="ck_users_"):
            asyncio.run(
                run(
                    "INSERT INTO users (id, username, username_key, role, sso_issuer, sso_subject)"
                    f" VALUES (gen_random_uuid(), 'x', 'x', 'admin', {bad})"
                )
            )
    command.downgrade(alembic_config(url), "0014")
    users, sessions = asyncio.run(
        run("SELECT username, password_hash FROM users", "SELECT * FROM user_sessions")
    )
    assert [tuple(u) for u in users] == [("ann", "!sso")] and sessions == []
    upgrade(url, "0015")


def test_cli_refuses_a_password_for_an_sso_account(pg_server: EmbeddedPostgres) -> None:
    from typer.testing import CliRunner

    from kpi.cli import app
    from migrations import upgrade

    url = pg_server.create_database(f"kpi_sso_cli_{uuid.uuid4().hex[:8]}")
    upgrade(url, "head")

    async def run(sql: str) -> list[Any]:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(sql))
                return result.all() if result.returns_rows else []
        finally:
            await engine.dispose()

    asyncio.run(
        run(
            "INSERT INTO users (id, username, username_key, role, sso_issuer, sso_subject) "
            "VALUES (gen_random_uuid(), 'ann', 'ann', 'admin', 'https://id', 's-1')"
        )
    )
    result = CliRunner().invoke(
        app,
        ["user", "reset-password", "ann", "--password-stdin"],
        input="a long enough password\n",
        env={"KPI_DATABASE_URL": url},
    )
    assert result.exit_code != 0 and "single sign-on" in result.output, result.output
    # A local password would be a second way in that disabling at the provider cannot close.
    assert asyncio.run(run("SELECT password_hash FROM users")) == [(None,)]
