"""Team digests end to end: scoring's scan over real KPI buckets (two replicas, an injected
clock), the preview and send routes, notify's relay and sender (two real notify processes) to
a webhook receiver, and a notify restart between recording and relaying."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.notify.handlers.digests import digest_delivery_key
from services.scoring.digests.periods import DigestSchedule
from services.scoring.digests.scan import DigestScanner, start_digests
from shared import digests as store
from shared.auth import Role
from shared.db import raw_connection, session_scope
from shared.notify_api import DeliveryPage, DigestDeliveryItem
from shared.settings import load_settings
from shared.webhooks import DigestPayload, verify_webhook_signature
from tests.integration.notify_support import FakeClock, Receiver, Start
from tests.integration.test_appraisal_api import ADMIN, NOW, app, rows
from tests.integration.test_scoring_api import seed_daily, seed_directory, token
from tests.kafka_helpers import wait_for

__all__ = ["app"]  # the module-scoped scoring app of test_appraisal_api (Asia/Shanghai)

SECRET = "digest-hook-secret"
# NOW is Monday 2026-10-05 10:00 in Shanghai: week 40 (28 Sep .. 4 Oct) is due since 08:00.
W40, W39 = dt.date(2026, 9, 30), dt.date(2026, 9, 23)
WEEK = dt.timedelta(days=7)


@pytest.fixture
async def client(app: FastAPI, clean_db: AsyncEngine) -> AsyncIterator[AsyncClient]:
    # The app runs no scan (KPI_DIGEST_SCHEDULE=off): these tests drive scans with their
    # own clocks.
    assert app.state.digests is None
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://scoring") as c:
        yield c
    app.state.clock = lambda: NOW


@pytest.fixture
def hooks() -> Iterator[tuple[Receiver, Receiver]]:
    team, org = Receiver().start(), Receiver().start()
    yield team, org
    team.stop()
    org.stop()


def scanners(
    app: FastAPI, sm: async_sessionmaker[AsyncSession], clock: FakeClock, n: int = 2
) -> list[DigestScanner]:
    """``n`` scoring replicas' scanners on one clock (weekly, Monday 08:00)."""
    return [
        DigestScanner(sm, app.state.config, DigestSchedule(), clock=clock, interval=3600)
        for _ in range(n)
    ]


async def scan_all(replicas: list[DigestScanner]) -> int:
    """Every replica scans at once; returns how many digests were new in all."""
    results = await asyncio.gather(*(r.scan_once() for r in replicas))
    return sum(r or 0 for r in results)


async def stored(sm: async_sessionmaker[AsyncSession]) -> list[store.Digest]:
    async with session_scope(sm) as session:
        return await store.list_digests(await raw_connection(session))


async def count(sm: async_sessionmaker[AsyncSession], sql: str) -> int:
    async with sm() as session:
        return int((await session.execute(text(sql))).scalar_one())


def channel(base: str, url: str, team: str | None, lang: str = "en") -> str:
    r = httpx.post(
        base + "/v1/channels",
        headers=ADMIN,
        json={
            "name": "hook",
            "kind": "webhook",
            "team_id": team,
            "lang": lang,
            "config": {"url": url, "secret": SECRET},
        },
        timeout=10,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def seed(engine: AsyncEngine) -> None:
    """north: s1 Li Wei falls below the CSAT line in week 40, 王芳 recovers; south: s3."""
    await seed_directory(
        engine,
        [("north", "North", "ann"), ("south", "South", None)],
        [("s1", "Li Wei", "north"), ("s2", "王芳", "north"), ("s3", "Bo", "south")],
    )
    await seed_daily(
        engine,
        rows("s1", W40, [("customer_satisfaction", 7.0, 10)])
        + rows("s1", W39, [("customer_satisfaction", 9.0, 10)])
        + rows("s2", W40, [("customer_satisfaction", 10.0, 10)])
        + rows("s2", W39, [("customer_satisfaction", 5.0, 10)])
        + rows("s3", W40, [("customer_satisfaction", 10.0, 10)]),
    )
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO alerts (alert_id, specialist_id, kpi, episode, team_id, status, "
                '"window", value, qualified, grade, samples, started_at, updated_at) VALUES '
                "('a-north-1', 's1', 'customer_satisfaction', 1, 'north', 'firing', '30d', 0.7, "
                "0.85, 'unqualified', 10, '2026-10-02T01:00:00Z', now()), "
                "('a-south-1', 's3', 'customer_satisfaction', 1, 'south', 'firing', '30d', 0.7, "
                "0.85, 'unqualified', 10, '2026-10-02T01:00:00Z', now())"
            )
        )


async def test_a_digest_is_recorded_once_and_relayed_once_to_the_teams_webhook(
    app: FastAPI,
    client: AsyncClient,
    clean_db: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    notify_env: dict[str, str],
    start_notify: Start,
    hooks: tuple[Receiver, Receiver],
) -> None:
    team_hook, org_hook = hooks
    await seed(clean_db)
    first = start_notify(notify_env)
    start_notify(notify_env)  # a second notify replica relays and sends too
    team_channel = channel(first.url, team_hook.url + "/north", "north")
    channel(first.url, org_hook.url + "/org", None)

    # Monday 07:59: week 40 is not due yet; the first scan records the latest due (week 39)
    # only, never earlier weeks.
    clock = FakeClock(NOW - dt.timedelta(hours=2, minutes=1))
    replicas = scanners(app, sessionmaker, clock)
    assert await scan_all(replicas) == 2  # north and south, week 39
    assert await scan_all(replicas) == 0
    clock.now = NOW  # 10:00: week 40 is due
    assert await scan_all(replicas) == 2
    for _ in range(5):  # the rest of the week, both replicas: nothing new
        clock.advance(hours=30)
        assert await scan_all(replicas) == 0
    digests = await stored(sessionmaker)
    assert sorted((d.team_id, d.period) for d in digests) == [
        ("north", "2026-W39"),
        ("north", "2026-W40"),
        ("south", "2026-W39"),
        ("south", "2026-W40"),
    ]
    await wait_for(lambda: len(team_hook.snapshot()) == 2, 20)
    by_period = {
        DigestPayload.model_validate_json(r.body).period.name: r for r in team_hook.snapshot()
    }
    req = by_period["2026-W40"]
    assert verify_webhook_signature(SECRET, req.body, req.headers["X-KPI-Signature"])
    w40 = next(d for d in digests if d.team_id == "north" and d.period == "2026-W40")
    assert req.headers["X-KPI-Delivery"] == digest_delivery_key(w40.id, team_channel)
    body = DigestPayload.model_validate_json(req.body)
    assert (body.type, body.kind, body.team_id, body.team_name, body.members) == (
        "team_digest",
        "digest",
        "north",
        "North",
        2,
    )
    csat = body.kpis[0]
    assert (csat.kpi, csat.samples, csat.previous_samples) == ("customer_satisfaction", 20, 20)
    assert csat.value == pytest.approx(0.85) and csat.previous_value == pytest.approx(0.7)
    assert [(c.specialist_id, c.direction) for c in body.crossed] == [
        ("s1", "fell_below"),
        ("s2", "recovered"),
    ]
    assert [a.alert_id for a in body.open_alerts] == ["a-north-1"]  # not south's
    assert body.open_alerts_total == 1
    assert body.message.startswith("[WEEKLY DIGEST] North (north) · 2026-W40")

    async def all_relayed() -> bool:
        sql = "SELECT count(*) FROM team_digests WHERE relayed_at IS NULL"
        return await count(sessionmaker, sql) == 0

    await wait_for(all_relayed, 20)
    await asyncio.sleep(1.0)  # a duplicate from the other replica would have arrived by now
    assert len(team_hook.snapshot()) == 2 and len(set(team_hook.keys())) == 2
    assert org_hook.snapshot() == []  # organisation-wide channels are admins': no digests
    assert await count(sessionmaker, "SELECT count(*) FROM deliveries") == 2  # south: none

    # The delivery log names the digest.
    async with httpx.AsyncClient(timeout=10) as notify:
        r = await notify.get(first.url + "/v1/deliveries", headers=ADMIN)
    assert r.status_code == 200, r.text
    page = DeliveryPage.model_validate(r.json())
    items = [i for d in page.items for i in d.items]
    assert all(isinstance(i, DigestDeliveryItem) for i in items)
    assert sorted(i.period for i in items if isinstance(i, DigestDeliveryItem)) == [
        "2026-W39",
        "2026-W40",
    ]
    assert all(d.status == "sent" for d in page.items)

    # The preview reads the same content and says it was sent; it sends nothing.
    r = await client.get("/v1/teams/north/digest?period=2026-W40", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["digest"] == w40.content.model_dump(mode="json")
    assert r.json()["sent"]["digest_id"] == w40.id and r.json()["sent"]["requested_by"] is None
    r = await client.get("/v1/teams/north/digest", headers=ADMIN)  # default: last week
    assert r.json()["digest"]["period"]["name"] == "2026-W40"

    # Sending a period already sent records nothing; an earlier one goes out, once.
    r = await client.post("/v1/teams/north/digest/send?period=2026-W40", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["recorded"] is False and r.json()["digest_id"] == w40.id
    for _ in range(2):
        r = await client.post("/v1/teams/north/digest/send?period=2026-W38", headers=ADMIN)
        assert r.status_code == 200, r.text
    assert r.json()["recorded"] is False and r.json()["requested_by"] == "bootstrap-admin"
    await wait_for(lambda: len(team_hook.snapshot()) == 3, 20)
    await asyncio.sleep(1.0)
    assert len(team_hook.snapshot()) == 3

    # A channel added later gets a period sent again by hand; those that had it do not.
    late = channel(first.url, org_hook.url + "/north-late", "north")
    r = await client.post("/v1/teams/north/digest/send?period=2026-W40", headers=ADMIN)
    assert r.status_code == 200 and r.json()["recorded"] is False
    await wait_for(lambda: len(org_hook.snapshot()) == 1, 20)
    await asyncio.sleep(1.0)
    assert len(team_hook.snapshot()) == 3 and len(org_hook.snapshot()) == 1
    assert org_hook.keys() == [digest_delivery_key(w40.id, late)]


async def test_preview_and_send_refuse_odd_periods_and_other_teams(
    client: AsyncClient, clean_db: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await seed(clean_db)
    bad = ["2026-W41", "2026-11", "2026-W54", "x", "2026-10\x00", "9999-W01"]
    for period in bad:
        r = await client.post(
            "/v1/teams/north/digest/send", params={"period": period}, headers=ADMIN
        )
        assert r.status_code == 422, (period, r.text)
        assert r.json()["errors"][0]["field"] == "period"
    # The week in progress can be previewed (so far), not sent.
    r = await client.get("/v1/teams/north/digest?period=2026-W41", headers=ADMIN)
    assert r.status_code == 200 and r.json()["sent"] is None
    r = await client.get("/v1/teams/north/digest?period=2026-W42", headers=ADMIN)
    assert r.status_code == 422
    r = await client.get("/v1/teams/nobody/digest", headers=ADMIN)
    assert r.status_code == 404
    r = await client.post("/v1/teams/nobody/digest/send", headers=ADMIN)
    assert r.status_code == 404
    south = await token(sessionmaker, Role.SUPERVISOR, "bo", ["south"])
    assert (await client.get("/v1/teams/north/digest", headers=south)).status_code == 404
    assert (await client.get("/v1/teams/south/digest", headers=south)).status_code == 200
    assert (await client.post("/v1/teams/south/digest/send", headers=south)).status_code == 403


async def test_a_notify_restart_between_record_and_relay_still_sends_once(
    app: FastAPI,
    client: AsyncClient,
    clean_db: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    notify_env: dict[str, str],
    start_notify: Start,
    hooks: tuple[Receiver, Receiver],
) -> None:
    team_hook, _ = hooks
    await seed(clean_db)
    # The channel exists, notify is down while scoring records the week's digest.
    first = start_notify(notify_env)
    channel(first.url, team_hook.url + "/north", "north", lang="zh-CN")
    assert first.proc is not None
    first.stop()
    assert await scan_all(scanners(app, sessionmaker, FakeClock(NOW))) == 2
    assert await count(sessionmaker, "SELECT count(*) FROM deliveries") == 0
    # Two notify processes come up: the digest is relayed and sent once.
    start_notify(notify_env)
    again = start_notify(notify_env)
    await wait_for(lambda: len(team_hook.snapshot()) == 1, 30)
    body = DigestPayload.model_validate_json(team_hook.snapshot()[0].body)
    assert body.message.startswith("[团队周报] North (north) · 2026-W40")
    # Restarted after sending: nothing again.
    again.stop()
    start_notify(notify_env)
    await asyncio.sleep(3.0)
    assert len(team_hook.snapshot()) == 1
    assert await count(sessionmaker, "SELECT count(*) FROM deliveries") == 1
    # A week later (a scoring restart in between changes nothing): week 41, once.
    replicas = scanners(app, sessionmaker, FakeClock(NOW + WEEK))
    assert await scan_all(replicas) == 2
    assert await scan_all(scanners(app, sessionmaker, FakeClock(NOW + WEEK))) == 0
    await wait_for(lambda: len(team_hook.snapshot()) == 2, 30)


async def test_the_scan_runs_as_a_runtime_task_until_stopped(
    app: FastAPI,
    client: AsyncClient,
    clean_db: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await seed(clean_db)
    clock = FakeClock(NOW)
    runtime = SimpleNamespace(
        settings=load_settings(digest_scan_seconds=1, timezone="Asia/Shanghai"),
        sessionmaker=sessionmaker,
        spawn=lambda coro, name: asyncio.create_task(coro, name=name),
        stoppers=[],
    )
    off = SimpleNamespace(**{**vars(runtime), "settings": load_settings(digest_schedule="off")})
    assert start_digests(off, app.state.config, clock) is None  # type: ignore[arg-type]
    running = start_digests(runtime, app.state.config, clock)  # type: ignore[arg-type]
    # The first scan comes after at most one interval (here 1 s), then one per interval.
    assert running is not None and running.interval == running.first_delay == 1
    await wait_for(lambda: running.recorded == 2, 40)  # the first scan: week 40
    clock.advance(days=7)
    await wait_for(lambda: running.recorded == 4, 10)  # a week later: week 41
    for stop in runtime.stoppers:
        stop()
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == "scoring-digests"]
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert sorted(d.period for d in await stored(sessionmaker)) == [
        "2026-W40",
        "2026-W40",
        "2026-W41",
        "2026-W41",
    ]
