"""Accounts and sign-in against the real scoring app and PostgreSQL: sessions, CSRF, expiry,
sign-in throttling across two app instances, disabling, passwords, users and tokens."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.scoring.app import build_app
from shared.auth import Role, issue_token
from shared.db import session_scope
from shared.kafka import ensure_topics
from shared.settings import load_settings
from shared.topics import Topics
from tests.service_helpers import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PASSWORD = "correct horse battery staple"
# Cheap hashes keep the tests fast; the parameters are what a rehash test changes.
FAST_HASH = {"password_time_cost": 1, "password_memory_kib": 8192, "password_parallelism": 1}
CACHE_SECONDS = 1.0


async def _app(database_url: str, bootstrap: str, **overrides: Any) -> FastAPI:
    topics = Topics(f"t{uuid.uuid4().hex[:10]}.")
    await ensure_topics(bootstrap, 1, topics.all)
    settings = load_settings(
        database_url=database_url,
        kafka_bootstrap=bootstrap,
        bootstrap_admin_token=ADMIN_TOKEN,
        topic_prefix=topics.prefix,
        scoring_session_timeout_ms=1000,
        auth_cache_seconds=CACHE_SECONDS,
        **{**FAST_HASH, **overrides},
    )
    return build_app(settings)


@pytest.fixture(scope="module")
async def apps(database_url: str, bootstrap: str) -> AsyncIterator[tuple[FastAPI, FastAPI]]:
    """Two instances of scoring on one database, as two replicas behind a balancer."""
    first = await _app(database_url, bootstrap)
    second = await _app(database_url, bootstrap)
    async with first.router.lifespan_context(first), second.router.lifespan_context(second):
        yield first, second


def _client(app: FastAPI, address: str = "127.0.0.1") -> AsyncClient:
    return AsyncClient(
        transport=ASGITransport(app=app, client=(address, 40000)), base_url="http://scoring"
    )


@pytest.fixture
async def one(apps: tuple[FastAPI, FastAPI], clean_db: AsyncEngine) -> AsyncIterator[AsyncClient]:
    async with _client(apps[0]) as c:
        yield c


@pytest.fixture
async def two(apps: tuple[FastAPI, FastAPI], clean_db: AsyncEngine) -> AsyncIterator[AsyncClient]:
    async with _client(apps[1]) as c:
        yield c


class Session:
    """A browser's view of one session: its cookie and CSRF token."""

    def __init__(self, login: Response) -> None:
        assert login.status_code == 200, login.text
        self.id = login.cookies["kpi_session"]
        self.csrf: str = login.json()["csrf_token"]
        self.body: dict[str, Any] = login.json()

    def headers(self, csrf: bool = True) -> dict[str, str]:
        out = {"Cookie": f"kpi_session={self.id}"}
        if csrf:
            out["X-CSRF-Token"] = self.csrf
        return out


async def create_user(
    client: AsyncClient, username: str, role: str = "admin", **extra: Any
) -> dict[str, Any]:
    body = {"username": username, "password": PASSWORD, "role": role, **extra}
    r = await client.post("/v1/users", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


async def login(client: AsyncClient, username: str, password: str = PASSWORD) -> Response:
    body = {"username": username, "password": password}
    r = await client.post("/v1/auth/login", json=body)
    # Each test sends the cookie it means to (Session.headers), never the jar's.
    client.cookies.clear()
    return r


async def signed_in(client: AsyncClient, username: str) -> Session:
    return Session(await login(client, username))


async def until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def test_sign_in_uses_the_session_and_sign_out_ends_it(one: AsyncClient) -> None:
    await create_user(one, "Ann.Admin", display_name="Ann 安")
    r = await login(one, "ann.ADMIN")  # logins ignore case
    cookie = r.headers["set-cookie"]
    assert "kpi_session=" in cookie and "HttpOnly" in cookie and "Path=/" in cookie, cookie
    assert "SameSite=lax" in cookie and "Secure" not in cookie, cookie  # plain http here
    s = Session(r)
    assert s.body["user"]["username"] == "Ann.Admin" and s.body["role"] == "admin"
    assert s.body["subject"] == "Ann.Admin" and len(s.csrf) == 64
    assert s.id not in r.text and s.id not in s.csrf  # the id travels in the cookie only

    me = await one.get("/v1/auth/session", headers=s.headers(csrf=False))
    assert me.status_code == 200 and me.json()["csrf_token"] == s.csrf, me.text
    assert me.json()["user"]["display_name"] == "Ann 安" and me.json()["expires_at"]
    assert (await one.get("/v1/teams", headers=s.headers(csrf=False))).status_code == 200
    assert (await one.get("/v1/whoami", headers=s.headers(csrf=False))).json()["role"] == "admin"
    users = (await one.get("/v1/users", headers=s.headers(csrf=False))).json()["users"]
    assert users[0]["last_login_at"] is not None

    # Signing out is a POST: it needs the CSRF token too; then the session is gone.
    assert (await one.post("/v1/auth/logout", headers=s.headers(csrf=False))).status_code == 403
    out = await one.post("/v1/auth/logout", headers=s.headers())
    assert out.status_code == 204 and 'kpi_session=""' in out.headers["set-cookie"], out.headers
    again = await one.get("/v1/teams", headers=s.headers(csrf=False))
    assert again.status_code == 401 and "sign in" in again.text, again.text


async def test_unsafe_methods_with_the_cookie_need_the_csrf_token(one: AsyncClient) -> None:
    await create_user(one, "csrf-admin")
    s = await signed_in(one, "csrf-admin")
    team = {"name": "North", "supervisor": None}
    for headers in (
        s.headers(csrf=False),
        {**s.headers(csrf=False), "X-CSRF-Token": "0" * 64},
        {**s.headers(csrf=False), "X-CSRF-Token": ""},
    ):
        r = await one.put("/v1/teams/north", json=team, headers=headers)
        assert r.status_code == 403 and "X-CSRF-Token" in r.text, r.text
    assert (await one.get("/v1/teams/north", headers=s.headers(csrf=False))).status_code == 404
    ok = await one.put("/v1/teams/north", json=team, headers=s.headers())
    assert ok.status_code == 200, ok.text
    # Bearer tokens are unaffected; a bearer token wins over a cookie sent with it.
    r = await one.put("/v1/teams/south", json=team, headers={**ADMIN, **s.headers(csrf=False)})
    assert r.status_code == 200, r.text


async def test_wrong_password_unknown_and_disabled_users_read_alike(one: AsyncClient) -> None:
    await create_user(one, "bob")
    await create_user(one, "carol")
    r = await one.put("/v1/users/carol", json={"disabled": True}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["disabled_at"], r.text
    answers = [
        await login(one, "bob", "wrong password, long enough"),
        await login(one, "nobody-at-all", PASSWORD),
        await login(one, "carol", PASSWORD),  # the right password of a disabled account
    ]
    assert {(a.status_code, a.text) for a in answers} == {(401, answers[0].text)}, [
        a.text for a in answers
    ]
    assert "invalid username or password" in answers[0].text
    assert all("kpi_session" not in a.headers.get("set-cookie", "") for a in answers)
    enabled = await one.put("/v1/users/carol", json={"disabled": False}, headers=ADMIN)
    assert enabled.status_code == 200 and enabled.json()["disabled_at"] is None
    assert (await login(one, "carol")).status_code == 200


async def test_failed_sign_ins_are_throttled_across_instances(
    one: AsyncClient, two: AsyncClient
) -> None:
    await create_user(one, "dave")
    for n in range(5):
        r = await login(one if n % 2 else two, "dave", f"wrong password {n:04d}")
        assert r.status_code == 401, r.text
    for client in (one, two):
        # Even the right password waits now: the limit is per username, in PostgreSQL.
        r = await login(client, "DAVE")
        assert r.status_code == 429, r.text
        assert 1 <= int(r.headers["retry-after"]) <= 15 * 60, r.headers
    # Another username from another address is not affected...
    await create_user(one, "erin")
    async with _client(one._transport.app, "10.1.2.3") as elsewhere:  # type: ignore[attr-defined]
        assert (await login(elsewhere, "erin")).status_code == 200
        assert (await login(elsewhere, "dave")).status_code == 429
    # ...and once the failures leave the window (moved back here), dave may sign in again.
    async with one._transport.app.state.runtime.sessionmaker() as session:  # type: ignore[attr-defined]
        await session.execute(
            text("UPDATE login_failures SET failed_at = failed_at - interval '16 minutes'")
        )
        await session.commit()
    assert (await login(two, "dave")).status_code == 200


async def test_many_usernames_from_one_address_are_throttled(one: AsyncClient) -> None:
    await create_user(one, "frank")
    async with _client(one._transport.app, "10.9.9.9") as attacker:  # type: ignore[attr-defined]
        for n in range(20):
            r = await login(attacker, f"guess-{n}", "not the password at all")
            assert r.status_code == 401, (n, r.text)
        r = await login(attacker, "frank")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1, r.text
    assert (await login(one, "frank")).status_code == 200  # others are not locked out


async def test_idle_and_absolute_expiry_end_a_session(
    one: AsyncClient, clean_db: AsyncEngine
) -> None:
    await create_user(one, "gina")
    idle, old = await signed_in(one, "gina"), await signed_in(one, "gina")
    async with clean_db.begin() as conn:
        digest = await conn.scalar(
            text("SELECT id_hash FROM user_sessions ORDER BY created_at LIMIT 1")
        )
        await conn.execute(
            text(
                "UPDATE user_sessions SET last_seen_at = now() - interval '61 minutes' "
                "WHERE id_hash = (SELECT id_hash FROM user_sessions ORDER BY created_at LIMIT 1)"
            )
        )
        await conn.execute(
            text(
                "UPDATE user_sessions SET expires_at = now() - interval '1 second' "
                "WHERE id_hash <> :d"
            ),
            {"d": digest},
        )

    async def both_refused() -> bool:
        codes = [
            (await one.get("/v1/teams", headers=s.headers(csrf=False))).status_code
            for s in (idle, old)
        ]
        return codes == [401, 401]

    await until(both_refused, 5 * CACHE_SECONDS, "idle and over-age sessions to be refused")
    assert (await one.get("/v1/auth/session", headers=idle.headers())).status_code == 401


async def test_a_disabled_users_session_dies_within_the_cache_window(
    one: AsyncClient, two: AsyncClient
) -> None:
    await create_user(one, "hank", role="supervisor", team_ids=["north"])
    s = await signed_in(one, "hank")
    assert (await two.get("/v1/teams", headers=s.headers(csrf=False))).status_code == 200
    started = time.monotonic()
    r = await one.put("/v1/users/hank", json={"disabled": True}, headers=ADMIN)
    assert r.status_code == 200, r.text

    async def refused() -> bool:
        r = await two.get("/v1/teams", headers=s.headers(csrf=False))
        return r.status_code == 401

    await until(refused, CACHE_SECONDS + 2, "the other instance to refuse the session")
    assert time.monotonic() - started < CACHE_SECONDS + 2


async def test_a_supervisor_session_sees_its_teams_and_no_admin_routes(
    one: AsyncClient, clean_db: AsyncEngine
) -> None:
    async with clean_db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO teams (id, name, supervisor) VALUES "
                "('north', 'North', NULL), ('west', 'West', 'ivy'), ('south', 'South', NULL)"
            )
        )
    await create_user(one, "ivy", role="supervisor", team_ids=["north"])
    s = await signed_in(one, "ivy")
    assert s.body["team_ids"] == ["north", "west"]  # named on the account, and as supervisor
    teams = (await one.get("/v1/teams", headers=s.headers(csrf=False))).json()["teams"]
    assert sorted(t["id"] for t in teams) == ["north", "west"]
    for method, path in (("GET", "/v1/users"), ("GET", "/v1/tokens"), ("POST", "/v1/tokens")):
        r = await one.request(method, path, headers=s.headers(), json={"role": "service"})
        assert r.status_code == 403, (method, path, r.text)


async def test_changing_ones_password(one: AsyncClient) -> None:
    await create_user(one, "jack")
    s, other = await signed_in(one, "jack"), await signed_in(one, "jack")
    new = "a brand new passphrase 新密码"
    cases = [
        ({"current_password": "not it at all!", "new_password": new}, 422, "current_password"),
        ({"current_password": PASSWORD, "new_password": "short"}, 422, "new_password"),
        ({"current_password": PASSWORD, "new_password": "x" * 1025}, 422, "new_password"),
        ({"current_password": PASSWORD, "new_password": "a NUL \x00 inside"}, 422, "new_password"),
    ]  # fmt: skip
    for body, status, field in cases:
        r = await one.post("/v1/auth/password", json=body, headers=s.headers())
        assert r.status_code == status and field in r.text, r.text
        assert "x" * 1025 not in r.text and "NUL \\u0000 inside" not in r.text
    r = await one.post(
        "/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": new},
        headers=s.headers(),
    )
    assert r.status_code == 200, r.text
    fresh = Session(r)  # this browser stays signed in, with a new session
    assert fresh.id != s.id
    for ended in (s, other):
        assert (await one.get("/v1/teams", headers=ended.headers())).status_code == 401
    assert (await one.get("/v1/teams", headers=fresh.headers())).status_code == 200
    assert (await login(one, "jack")).status_code == 401
    assert (await login(one, "jack", new)).status_code == 200
    # A bearer token has no password to change.
    body = {"current_password": PASSWORD, "new_password": new}
    assert (await one.post("/v1/auth/password", json=body, headers=ADMIN)).status_code == 403


async def test_admin_reset_ends_sessions_and_rehash_follows_new_parameters(
    one: AsyncClient, database_url: str, bootstrap: str, clean_db: AsyncEngine
) -> None:
    await create_user(one, "kim")
    s = await signed_in(one, "kim")
    r = await one.post("/v1/users/KIM/password", json={"password": "tiny"}, headers=ADMIN)
    assert r.status_code == 422 and "password" in r.text and "tiny" not in r.text, r.text
    reset = "reset by the admin, 2026"
    r = await one.post("/v1/users/kim/password", json={"password": reset}, headers=ADMIN)
    assert r.status_code == 204, r.text
    assert (await one.get("/v1/teams", headers=s.headers())).status_code == 401

    async def stored() -> str:
        async with clean_db.begin() as conn:
            return str(await conn.scalar(text("SELECT password_hash FROM users")))

    assert "m=8192,t=1,p=1" in await stored()
    stronger = await _app(database_url, bootstrap, password_time_cost=2)
    async with stronger.router.lifespan_context(stronger), _client(stronger) as c:
        assert (await login(c, "kim", reset)).status_code == 200
    assert "m=8192,t=2,p=1" in await stored()  # rehashed by the sign-in that proved it
    assert (await login(one, "kim", reset)).status_code == 200  # still the same password


async def test_user_admin_validates_every_field(one: AsyncClient) -> None:
    await create_user(one, "Liu.Yang")
    base = {"username": "x", "password": PASSWORD, "role": "admin"}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"username": "liu.yang"}, 409, "username"),  # the same login in another case
        ({"username": "tab\there"}, 422, "username"),
        ({"username": ""}, 422, "username"),
        ({"password": "short"}, 422, "password"),
        ({"password": "p" * 1025}, 422, "password"),
        ({"role": "service"}, 422, "role"),
        ({"role": "specialist"}, 422, "specialist_id"),
        ({"role": "admin", "team_ids": ["north"]}, 422, "team_ids"),
        ({"role": "supervisor", "team_ids": ["bad\x00team"]}, 422, "team_ids"),
        ({"display_name": "bell\x07"}, 422, "display_name"),
    ]
    for change, status, field in cases:
        r = await one.post("/v1/users", json={**base, **change}, headers=ADMIN)
        assert r.status_code == status and field in r.text, (change, r.status_code, r.text)
    r = await one.post(
        "/v1/users",
        json={**base, "username": "sp-1", "role": "specialist", "specialist_id": "li.na"},
        headers=ADMIN,
    )
    assert r.status_code == 201 and r.json()["specialist_id"] == "li.na", r.text
    s = Session(await login(one, "sp-1"))
    assert s.body["role"] == "specialist" and s.body["specialist_id"] == "li.na"
    # A role change drops what the old role had unless given again.
    r = await one.put("/v1/users/sp-1", json={"role": "supervisor"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["specialist_id"] is None, r.text
    assert (await one.put("/v1/users/nobody", json={}, headers=ADMIN)).status_code == 404
    # An admin cannot disable or demote themselves.
    me = await signed_in(one, "liu.yang")
    for change, field in (({"disabled": True}, "disabled"), ({"role": "supervisor"}, "role")):
        r = await one.put("/v1/users/Liu.Yang", json=change, headers=me.headers())
        assert r.status_code == 422 and field in r.text, r.text


async def test_tokens_expire_list_without_secrets_and_revoke(
    one: AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    async with session_scope(sessionmaker) as session:
        expired, _ = await issue_token(session, Role.SERVICE, "old", expires_at=past)
    r = await one.get("/v1/whoami", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and "expired" in r.text, r.text

    r = await one.post(
        "/v1/tokens",
        json={"role": "supervisor", "subject": "sup-x", "team_ids": ["north"], "expires_in": "90d"},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    clear = created["token"]
    expires = dt.datetime.fromisoformat(created["expires_at"])
    assert abs(expires - dt.datetime.now(dt.UTC) - dt.timedelta(days=90)) < dt.timedelta(hours=1)
    mine = {"Authorization": f"Bearer {clear}"}
    assert (await one.get("/v1/whoami", headers=mine)).json()["team_ids"] == ["north"]
    listed = await one.get("/v1/tokens", headers=ADMIN)
    assert listed.status_code == 200 and clear not in listed.text, listed.text
    assert "hash" not in listed.text
    ids = {t["id"] for t in listed.json()["tokens"]}
    assert created["id"] in ids and len(ids) == 2
    for bad, field in (
        ({"role": "service", "expires_in": "forever"}, "expires_in"),
        ({"role": "specialist"}, "subject"),
        ({"role": "root"}, "role"),
        ({"role": "service", "team_ids": ["north"]}, "team_ids"),
    ):
        r = await one.post("/v1/tokens", json=bad, headers=ADMIN)
        assert r.status_code == 422 and field in r.text, (bad, r.text)
    assert (await one.delete(f"/v1/tokens/{created['id']}", headers=ADMIN)).status_code == 204
    assert (await one.get("/v1/whoami", headers=mine)).status_code == 401  # at once, here
    assert (await one.delete(f"/v1/tokens/{uuid.uuid4()}", headers=ADMIN)).status_code == 404
    revoked = [t for t in (await one.get("/v1/tokens", headers=ADMIN)).json()["tokens"]]
    assert any(t["id"] == created["id"] and t["revoked_at"] for t in revoked)


async def test_bootstrap_admin_is_created_once(
    database_url: str, bootstrap: str, clean_db: AsyncEngine
) -> None:
    first = await _app(database_url, bootstrap, bootstrap_admin_password="first bootstrap pw")
    async with first.router.lifespan_context(first), _client(first) as c:
        assert (await login(c, "admin", "first bootstrap pw")).status_code == 200
    # A later start with another password changes nothing: users exist.
    again = await _app(database_url, bootstrap, bootstrap_admin_password="second bootstrap pw")
    async with again.router.lifespan_context(again), _client(again) as c:
        assert (await login(c, "admin", "second bootstrap pw")).status_code == 401
        assert (await login(c, "admin", "first bootstrap pw")).status_code == 200


async def test_a_login_replaces_the_session_it_came_with_and_needs_json(one: AsyncClient) -> None:
    await create_user(one, "nia")
    planted = await signed_in(one, "nia")
    r = await one.post(
        "/v1/auth/login",
        json={"username": "nia", "password": PASSWORD},
        headers=planted.headers(csrf=False),
    )
    one.cookies.clear()
    fresh = Session(r)
    assert fresh.id != planted.id
    assert (await one.get("/v1/teams", headers=planted.headers())).status_code == 401
    assert (await one.get("/v1/teams", headers=fresh.headers())).status_code == 200
    # A form of another site can post text/plain, never JSON: such a sign-in is refused.
    r = await one.post(
        "/v1/auth/login",
        content=b'{"username": "nia", "password": "correct horse battery staple"}',
        headers={"Content-Type": "text/plain"},
    )
    assert r.status_code == 422 and "set-cookie" not in r.headers, r.text
