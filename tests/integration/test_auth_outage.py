"""Token verification while PostgreSQL is down, and the bounds of the token cache.

Ingest runs as a real process against its own embedded PostgreSQL, which is paused
(SIGSTOP of the postmaster and its backends: connections hang instead of being refused) and
then stopped: a service token it
verified before keeps intake going on the broker alone; a token it has not seen gets 503
with Retry-After; nothing answers 500 and nothing accepted is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kpi.stack import ServiceProcess
from migrations import upgrade
from shared.auth import ApiToken, Authenticator, Role, hash_token, issue_token, new_token
from shared.db import create_engine, create_sessionmaker, session_scope, utcnow
from shared.embedded import EmbeddedPostgres
from shared.topics import Topics
from tests.integration.test_ingest_flow import AUTH, Outputs, ev
from tests.service_helpers import service_env, start_service, wait_status


async def _issue(url: str, n: int) -> list[str]:
    engine = create_engine(url, pool_size=1, application_name="outage-tests")
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            return [(await issue_token(session, Role.SERVICE, f"svc-{i}"))[0] for i in range(n)]
    finally:
        await engine.dispose()


def _event(n: int, tag: str) -> dict[str, Any]:
    return ev(f"outage-{tag}-{n}", "ticket.reopened", ticket_id=f"T-{tag}")


async def _post(
    http: httpx.AsyncClient, token: str | None, event: dict[str, Any]
) -> tuple[httpx.Response, float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    started = time.monotonic()
    r = await http.post("/v1/events", json=event, headers=headers)
    assert r.status_code != 500, r.text
    return r, time.monotonic() - started


def _signal_postgres(pid: int, sig: signal.Signals) -> None:
    """Signal the postmaster and every backend: each backend calls setsid(), so a signal to
    the postmaster's process group would reach the postmaster alone (and a pooled
    connection's backend would go on answering)."""
    postmaster = psutil.Process(pid)
    os.kill(pid, sig)  # first, so that it forks nothing new meanwhile
    for child in postmaster.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            child.send_signal(sig)


def _unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"].isdigit(), r.headers
    # A problem (docs/errors.md) like every error answer: the token store's or the route's.
    assert r.headers["content-type"] == "application/problem+json", r.headers
    assert r.json()["type"] == "urn:kpi:problem:unavailable", r.text


async def test_cached_service_token_keeps_intake_going_while_postgres_is_down(
    bootstrap: str, created_topics: Topics, tmp_path: Path, pg_home: Path
) -> None:
    pg = EmbeddedPostgres(pg_home / "pg")
    await asyncio.to_thread(pg.start)
    svc: ServiceProcess | None = None
    tag = uuid.uuid4().hex[:6]
    try:
        url = pg.create_database("kpi_outage")
        await asyncio.to_thread(upgrade, url)
        used, unseen, unseen_too = await _issue(url, 3)
        env = service_env(
            url,
            bootstrap,
            KPI_TOPIC_PREFIX=created_topics.prefix,
            # Every request asks PostgreSQL: the cache answers only because it cannot.
            KPI_AUTH_CACHE_SECONDS="0",
            KPI_AUTH_STALE_SECONDS="300",
        )
        svc = start_service("ingest", env, tmp_path)
        await asyncio.to_thread(wait_status, svc.url + "/readyz", 200, 60)
        accepted = []
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as http:
            r, _ = await _post(http, used, _event(1, tag))
            assert r.status_code == 202, r.text
            accepted.append(1)

            assert pg.pid is not None
            _signal_postgres(pg.pid, signal.SIGSTOP)
            try:
                r, took = await _post(http, used, _event(2, tag))
                assert r.status_code == 202, r.text
                assert took < 10, took
                accepted.append(2)
                r, took = await _post(http, unseen, _event(3, tag))
                _unavailable(r)
                assert took < 10, took
                r, _ = await _post(http, None, _event(3, tag))
                assert r.status_code == 401, r.text
            finally:
                _signal_postgres(pg.pid, signal.SIGCONT)

            # PostgreSQL answers again: the token it could not check is checked now.
            deadline = time.monotonic() + 30
            while True:
                r, _ = await _post(http, unseen, _event(4, tag))
                if r.status_code == 202:
                    accepted.append(4)
                    break
                _unavailable(r)
                assert time.monotonic() < deadline, r.text
                await asyncio.sleep(0.5)

            await asyncio.to_thread(pg.stop)  # refused connections this time
            r, took = await _post(http, used, _event(5, tag))
            assert r.status_code == 202, r.text
            assert took < 10, took
            accepted.append(5)
            r, _ = await _post(http, unseen_too, _event(6, tag))
            _unavailable(r)
            # A route that needs the database itself: 503 too, not 500.
            stats = await http.get("/v1/stats", headers=AUTH)
            _unavailable(stats)
            assert (await http.get("/readyz")).status_code == 503

        async with Outputs(bootstrap, created_topics) as out:
            want = {f"outage-{tag}-{n}" for n in accepted}
            await out.until(lambda: want <= {e["event_id"] for e in out.events})
            await out.poll()
            got = sorted(e["event_id"] for e in out.events if e["event_id"].startswith("outage-"))
            assert got == sorted(want), got
    finally:
        if svc is not None:
            svc.stop()
        await asyncio.to_thread(pg.stop)


async def _revoke(sm: async_sessionmaker[AsyncSession], token: str) -> None:
    async with session_scope(sm) as session:
        await session.execute(
            update(ApiToken)
            .where(ApiToken.token_hash == hash_token(token))
            .values(revoked_at=utcnow())
        )


async def test_revocation_takes_effect_within_the_cache_time_even_after_a_flood(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    # A TTL with room for the flood below on a busy machine (the suite runs on several workers).
    ttl = 3.0
    auth = Authenticator(sessionmaker, None, cache_seconds=ttl, max_entries=8)
    async with session_scope(sessionmaker) as session:
        token, _ = await issue_token(session, Role.SERVICE, "zendesk")
    principal = await auth.resolve(token)
    assert principal is not None and principal.role is Role.SERVICE
    # Unknown tokens are remembered apart: a flood of them never evicts a verified one.
    for _ in range(40):
        assert await auth.resolve(new_token()) is None
    await _revoke(sessionmaker, token)
    revoked_at = time.monotonic()
    assert await auth.resolve(token) == principal  # still cached: not evicted by the flood
    while await auth.resolve(token) is not None:
        assert time.monotonic() - revoked_at < ttl + 0.5, "revocation took longer than the TTL"
        await asyncio.sleep(0.05)


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    unknown=st.integers(min_value=0, max_value=30),
    known=st.integers(min_value=0, max_value=6),
    bound=st.integers(min_value=1, max_value=5),
)
def test_the_token_cache_never_holds_more_than_its_bound(
    database_url: str, unknown: int, known: int, bound: int
) -> None:
    async def run() -> None:
        engine = create_engine(database_url, pool_size=2, application_name="cache-bounds")
        try:
            sm = create_sessionmaker(engine)
            async with session_scope(sm) as session:
                tokens = [(await issue_token(session, Role.SERVICE, "b"))[0] for _ in range(known)]
            auth = Authenticator(sm, None, cache_seconds=60.0, max_entries=bound)
            for t in [*tokens, *(new_token() for _ in range(unknown))]:
                await auth.resolve(t)
            valid, invalid = auth.cache_sizes()
            assert valid == min(known, bound) and invalid == min(unknown, bound)
            # The most recently verified tokens are the ones kept.
            for t in tokens[-bound:]:
                await _revoke(sm, t)
                assert await auth.resolve(t) is not None  # answered from the cache
        finally:
            await engine.dispose()

    asyncio.run(run())
