"""Silences are scoped to the team they were set in and capped in length; migration 0010
scrubs stored delivery errors and shortens old silences."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import asyncpg
import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from migrations import upgrade
from services.notify import repository as repo
from services.notify.handlers.evaluate import run_tick
from shared.db import session_scope
from shared.embedded import EmbeddedPostgres
from tests.integration.notify_support import Start, seed_two_teams, snapshot
from tests.integration.test_notify_pipeline import add_channel, cfg, feed, scalar
from tests.integration.test_scoring_repository import asyncpg_dsn
from tests.service_helpers import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)


async def _silence(
    sm: async_sessionmaker[AsyncSession], specialist: str | None, team: str | None
) -> None:
    async with session_scope(sm) as s:
        await repo.insert_silence(
            await repo.raw_connection(s),
            silence_id=str(uuid.uuid4()),
            specialist_id=specialist,
            kpi=None,
            team_id=team,
            until=T0 + dt.timedelta(hours=6),
            comment=None,
            created_by="ann",
            created_at=T0,
        )


async def _move(sm: async_sessionmaker[AsyncSession], specialist: str, team: str) -> None:
    async with session_scope(sm) as s:
        await s.execute(
            text("UPDATE specialists SET team_id = :t WHERE id = :s"), {"t": team, "s": specialist}
        )


async def test_a_silence_stays_with_the_team_it_was_set_in(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await seed_two_teams(sessionmaker)
    await add_channel(sessionmaker, "http://127.0.0.1:9/unused")
    c = cfg()
    await _silence(sessionmaker, "n1", "north")  # ann's, while Nina is in north
    await _silence(sessionmaker, "s1", "south")  # bo's, for Sam in south
    assert await feed(sessionmaker, c, T0, snapshot("n1", T0), snapshot("s1", T0)) == 0
    # Nina moves to south: north's silence is not south's, so south hears of her alert.
    await _move(sessionmaker, "n1", "south")
    async with session_scope(sessionmaker) as s:
        assert (await run_tick(s, c, T0 + dt.timedelta(minutes=1))).deliveries == 1
    owed = await scalar(
        sessionmaker, "SELECT items->0->'payload'->>'specialist_id' FROM deliveries"
    )
    assert owed == "n1"
    # Sam's silence still holds in his own team; a snapshot naming another team changes
    # nothing, the directory's team decides.
    later = T0 + dt.timedelta(minutes=2)
    assert await feed(sessionmaker, c, later, snapshot("s1", later, team_id="north")) == 0


def _call(method: str, url: str, headers: dict[str, str], **kw: Any) -> httpx.Response:
    return httpx.request(method, url, headers=headers, timeout=10, **kw)


async def test_silences_are_capped_listed_and_deleted_by_the_current_team(
    sessionmaker: async_sessionmaker[AsyncSession], notify_env: dict[str, str], start_notify: Start
) -> None:
    tokens = await seed_two_teams(sessionmaker)
    ann = {"Authorization": f"Bearer {tokens['ann']}"}
    bo = {"Authorization": f"Bearer {tokens['bo']}"}
    svc = start_notify({**notify_env, "KPI_NOTIFY_SILENCE_MAX_HOURS": "48"})
    url = svc.url + "/v1/silences"
    now = dt.datetime.now(dt.UTC)

    def until(hours: float) -> str:
        return (now + dt.timedelta(hours=hours)).isoformat()

    too_long = await asyncio.to_thread(
        _call, "POST", url, ann, json={"specialist_id": "n1", "until": until(49)}
    )
    assert too_long.status_code == 422
    assert too_long.json()["errors"] == [
        {
            "loc": ["body", "until"],
            "field": "until",
            "msg": "must be at most 48 hours from now (KPI_NOTIFY_SILENCE_MAX_HOURS)",
            "type": "value_error",
        }
    ]
    mine = await asyncio.to_thread(
        _call, "POST", url, ann, json={"specialist_id": "n1", "until": until(47)}
    )
    assert mine.status_code == 201 and mine.json()["team_id"] == "north", mine.text
    everyone = await asyncio.to_thread(
        _call, "POST", url, ADMIN, json={"kpi": "nps", "until": until(2)}
    )
    assert everyone.status_code == 201, everyone.text
    mine_id, everyone_id = mine.json()["id"], everyone.json()["id"]

    await _move(sessionmaker, "n1", "south")

    def listed(headers: dict[str, str]) -> dict[str, bool]:
        items = _call("GET", url, headers).json()["items"]
        return {item["id"]: item["applies"] for item in items}

    # North keeps seeing (and may delete) the silence it set, marked as no longer applying;
    # both teams see the organisation-wide one, which only admins delete.
    assert await asyncio.to_thread(listed, ann) == {mine_id: False, everyone_id: True}
    assert await asyncio.to_thread(listed, bo) == {everyone_id: True}
    # Another team's silence answers like an unknown one; the organisation-wide one is listed
    # to everyone, so refusing it by role reveals nothing.
    for sid, status in ((mine_id, 404), (everyone_id, 403)):
        answer = await asyncio.to_thread(_call, "DELETE", f"{url}/{sid}", bo)
        assert answer.status_code == status, answer.text
    assert (await asyncio.to_thread(_call, "DELETE", f"{url}/{mine_id}", ann)).status_code == 204
    assert (
        await asyncio.to_thread(_call, "DELETE", f"{url}/{everyone_id}", ann)
    ).status_code == 403
    assert (
        await asyncio.to_thread(_call, "DELETE", f"{url}/{everyone_id}", ADMIN)
    ).status_code == 204


def test_migration_0010_scrubs_errors_and_shortens_old_silences(
    pg_server: EmbeddedPostgres,
) -> None:
    url = pg_server.create_database(f"kpi_m10_{uuid.uuid4().hex[:8]}")
    dsn = asyncpg_dsn(url)
    upgrade(url, "0009")
    created = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    async def seed() -> None:
        conn = await asyncpg.connect(dsn)
        await conn.execute(
            "INSERT INTO deliveries (delivery_key, channel_id, group_key, alert_ids, items, "
            "status, next_attempt_at, last_error) VALUES "
            "('k1', 'c', 'g', '{}', '[]', 'failed', now(), 'HTTP 500: b''password=hunter2'''),"
            "('k2', 'c', 'g', '{}', '[]', 'failed', now(), 'timed out')"
        )
        await conn.execute(
            "INSERT INTO delivery_attempts (delivery_id, attempt, at, outcome, error) "
            "SELECT id, 1, now(), 'failed', 'receiver error code 3: token hunter2 bad' "
            "FROM deliveries WHERE delivery_key = 'k1'"
        )
        await conn.execute(
            "INSERT INTO silences (id, specialist_id, until, created_by, created_at) VALUES "
            "('long', 'a', $1, 'x', $2), ('short', 'b', $3, 'x', $2)",
            created + dt.timedelta(days=3650),
            created,
            created + dt.timedelta(days=2),
        )
        await conn.close()

    async def read() -> tuple[list[Any], list[Any], dict[str, dt.datetime]]:
        conn = await asyncpg.connect(dsn)
        errors = [r[0] for r in await conn.fetch("SELECT last_error FROM deliveries ORDER BY id")]
        attempts = [r[0] for r in await conn.fetch("SELECT error FROM delivery_attempts")]
        silences = {r[0]: r[1] for r in await conn.fetch("SELECT id, until FROM silences")}
        await conn.close()
        return errors, attempts, silences

    asyncio.run(seed())
    upgrade(url, "0010")
    errors, attempts, silences = asyncio.run(read())
    assert errors == ["HTTP 500", "timed out"]
    assert attempts == ["receiver error code 3"]
    assert silences == {
        "long": created + dt.timedelta(days=31),
        "short": created + dt.timedelta(days=2),
    }
