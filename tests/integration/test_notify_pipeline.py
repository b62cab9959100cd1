"""Notify use-cases against real PostgreSQL and a real HTTP receiver (in-process sender)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.config import NotifyConfig
from services.notify.egress import EgressPolicy
from services.notify.handlers.evaluate import handle_snapshots, run_tick
from services.notify.retry import RetryPolicy
from services.notify.rules import RuleConfig
from services.notify.sender import Sender
from shared.db import session_scope, utcnow
from shared.scores import ScoreSnapshot
from shared.webhooks import verify_webhook_signature
from tests.integration.notify_support import FakeClock, Receiver, snapshot
from tests.kafka_helpers import wait_for

SECRET = "s3cret-webhook-key"
T0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)


def cfg(**rules: Any) -> NotifyConfig:
    group_wait = rules.pop("group_wait", 0.0)
    retry = rules.pop("retry", RetryPolicy())
    return NotifyConfig(
        rules=RuleConfig(**rules),
        lang="en",
        group_wait=dt.timedelta(seconds=group_wait),
        link_base="http://kpi.example",
        retry=retry,
        # The test receivers listen on 127.0.0.1, which the default policy refuses.
        egress=EgressPolicy(allow_private=True),
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


async def add_channel(
    sm: async_sessionmaker[AsyncSession],
    url: str,
    *,
    cid: str = "hook",
    kind: str = "webhook",
    team: str | None = None,
    config: dict[str, Any] | None = None,
) -> None:
    import orjson

    async with session_scope(sm) as s:
        await s.execute(
            text(
                "INSERT INTO channels (id, name, kind, team_id, lang, config) "
                "VALUES (:id, :id, :kind, :team, 'en', CAST(:cfg AS jsonb))"
            ),
            {
                "id": cid,
                "kind": kind,
                "team": team,
                "cfg": orjson.dumps(config or {"url": url, "secret": SECRET}).decode(),
            },
        )


async def feed(
    sm: async_sessionmaker[AsyncSession], c: NotifyConfig, now: dt.datetime, *snaps: dict[str, Any]
) -> int:
    async with session_scope(sm) as s:
        out = await handle_snapshots(s, c, [ScoreSnapshot.model_validate(x) for x in snaps], now)
    return out.deliveries


async def scalar(sm: async_sessionmaker[AsyncSession], sql: str) -> Any:
    async with sm() as s:
        return (await s.execute(text(sql))).scalar()


class RunningSender:
    def __init__(
        self, sm: async_sessionmaker[AsyncSession], c: NotifyConfig, clock: Any, **kw: Any
    ):
        self.sender = Sender(sm, c, clock=clock, poll_interval=0.05, **kw)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Sender:
        self.task = asyncio.create_task(self.sender.run())
        return self.sender

    async def __aexit__(self, *exc: object) -> None:
        self.sender.stop()
        assert self.task is not None
        await self.task


async def test_fire_deliver_replay_resolve(
    sessionmaker: async_sessionmaker[AsyncSession], receiver: Receiver
) -> None:
    c = cfg()
    clock = FakeClock(T0)
    await add_channel(sessionmaker, receiver.url)
    bad = snapshot("alice", T0, csat=0.5)
    assert await feed(sessionmaker, c, T0, bad) == 1
    # Redelivered message and a newer snapshot with the same verdict: nothing new to say.
    assert await feed(sessionmaker, c, T0, bad) == 0
    assert await feed(sessionmaker, c, T0, snapshot("alice", T0 + dt.timedelta(minutes=1))) == 0
    async with RunningSender(sessionmaker, c, clock):
        await wait_for(lambda: len(receiver.snapshot()) == 1, 10)
        req = receiver.snapshot()[0]
        assert verify_webhook_signature(SECRET, req.body, req.headers["X-KPI-Signature"])
        body = req.json()
        assert body["status"] == "firing" and body["specialist_id"] == "alice"
        assert body["kpi"] == "customer_satisfaction" and body["samples"] == 20
        assert set(body) == {
            "alert_id",
            "status",
            "specialist_id",
            "team_id",
            "kpi",
            "window",
            "value",
            "qualified",
            "grade",
            "samples",
            "started_at",
            "resolved_at",
            "message",
        }
        # Back above the line but inside the 2-point hysteresis: still firing, no message.
        assert (
            await feed(
                sessionmaker, c, T0, snapshot("alice", T0 + dt.timedelta(minutes=2), csat=0.86)
            )
            == 0
        )
        assert (
            await feed(
                sessionmaker, c, T0, snapshot("alice", T0 + dt.timedelta(minutes=3), csat=0.88)
            )
            == 1
        )
        await wait_for(lambda: len(receiver.snapshot()) == 2, 10)
    resolved = receiver.snapshot()[1].json()
    assert resolved["status"] == "resolved" and resolved["alert_id"] == body["alert_id"]
    assert len(set(receiver.keys())) == 2
    assert await scalar(sessionmaker, "SELECT count(*) FROM delivery_attempts") == 2
    assert await scalar(sessionmaker, "SELECT status FROM alerts") == "resolved"


async def test_clock_driven_reminder_pending_and_silence_expiry(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    c = cfg(pending_for=dt.timedelta(minutes=10), repeat_interval=dt.timedelta(hours=24))
    await add_channel(sessionmaker, "http://127.0.0.1:9/unused")
    assert await feed(sessionmaker, c, T0, snapshot("bob", T0)) == 0  # pending, not yet firing

    async def tick(at: dt.datetime) -> int:
        async with session_scope(sessionmaker) as s:
            return (await run_tick(s, c, at)).deliveries

    assert await tick(T0 + dt.timedelta(minutes=5)) == 0
    assert await tick(T0 + dt.timedelta(minutes=10)) == 1  # pending period over: fires
    assert await tick(T0 + dt.timedelta(hours=12)) == 0
    assert await tick(T0 + dt.timedelta(hours=24, minutes=10)) == 1  # reminder
    assert await tick(T0 + dt.timedelta(hours=24, minutes=11)) == 0  # restart-like re-run: no
    kinds = await scalar(
        sessionmaker, "SELECT string_agg(items->0->>'kind', ',' ORDER BY id) FROM deliveries"
    )
    assert kinds == "firing,reminder"
    # Silence, resolve while silenced (owed), then the silence expires: resolve is sent by tick.
    until = T0 + dt.timedelta(hours=30)
    async with session_scope(sessionmaker) as s:
        await s.execute(
            text(
                "INSERT INTO silences (id, specialist_id, until, created_by) "
                "VALUES ('s1', 'bob', :u, 'test')"
            ),
            {"u": until},
        )
    later = T0 + dt.timedelta(hours=25)
    assert await feed(sessionmaker, c, later, snapshot("bob", later, csat=0.95)) == 0
    assert await tick(T0 + dt.timedelta(hours=29)) == 0
    assert await tick(T0 + dt.timedelta(hours=30, seconds=1)) == 1
    assert await tick(T0 + dt.timedelta(hours=31)) == 0
    kinds = await scalar(
        sessionmaker, "SELECT string_agg(items->0->>'kind', ',' ORDER BY id) FROM deliveries"
    )
    assert kinds == "firing,reminder,resolved"


async def test_clock_snapshot_resolves_idle_specialist(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Bad days leave the window: the scoring relay's "clock" snapshot alone resolves."""
    c = cfg()
    await add_channel(sessionmaker, "http://127.0.0.1:9/unused")
    assert await feed(sessionmaker, c, T0, snapshot("carol", T0)) == 1
    later = T0 + dt.timedelta(days=31)
    # Window emptied by the clock: insufficient data now, which resolves the alert.
    assert (
        await feed(
            sessionmaker, c, later, snapshot("carol", later, csat=None, samples=0, reason="clock")
        )
        == 1
    )
    assert await scalar(sessionmaker, "SELECT status FROM alerts") == "resolved"
    # The same clock snapshot again (start-up + midnight): no re-notification.
    assert (
        await feed(
            sessionmaker, c, later, snapshot("carol", later, csat=None, samples=0, reason="clock")
        )
        == 0
    )


async def test_grouping_storm_into_few_messages(
    sessionmaker: async_sessionmaker[AsyncSession], receiver: Receiver
) -> None:
    c = cfg(group_wait=5)
    clock = FakeClock(T0)
    await add_channel(sessionmaker, receiver.url)
    first = [snapshot(f"s{i:02d}", T0, team_id=None) for i in range(10)]
    assert await feed(sessionmaker, c, T0, *first) == 1  # one message for the batch
    t1 = T0 + dt.timedelta(seconds=1)
    assert await feed(sessionmaker, c, t1, snapshot("s10", t1)) == 1  # delayed follow-up
    t2 = T0 + dt.timedelta(seconds=2)
    assert await feed(sessionmaker, c, t2, snapshot("s11", t2), snapshot("s12", t2)) == 0
    async with RunningSender(sessionmaker, c, clock):
        await wait_for(lambda: len(receiver.snapshot()) == 1, 10)
        clock.advance(seconds=6)
        await wait_for(lambda: len(receiver.snapshot()) == 2, 10)
    bodies = [r.json() for r in receiver.snapshot()]
    assert [len(b["alerts"]) for b in bodies] == [10, 3]


async def test_retries_then_failed_and_slow_channel_does_not_block(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    # The optional attempt cap (KPI_NOTIFY_MAX_ATTEMPTS) ends the budget after 3 attempts.
    c = cfg(retry=RetryPolicy(base=0.01, cap=0.02, max_attempts=3))
    clock = utcnow  # retries are scheduled in real time
    broken = Receiver(behaviour=lambda r: (500, b"boom", 0.0)).start()
    slow = Receiver(behaviour=lambda r: (200, b"{}", 3.0)).start()
    fast = Receiver().start()
    try:
        await add_channel(sessionmaker, broken.url, cid="broken")
        await add_channel(sessionmaker, slow.url, cid="slow")
        await add_channel(sessionmaker, fast.url, cid="fast")
        async with RunningSender(sessionmaker, c, clock):
            started = asyncio.get_running_loop().time()
            await feed(sessionmaker, c, clock(), *[snapshot(f"x{i}", T0) for i in range(4)])
            await wait_for(lambda: len(fast.snapshot()) == 4, 10)
            fast_done = asyncio.get_running_loop().time() - started
            await wait_for(lambda: len(broken.snapshot()) == 12, 10)
            await wait_for(lambda: len(slow.snapshot()) == 4, 15)

            async def failed() -> bool:
                n = await scalar(
                    sessionmaker,
                    "SELECT count(*) FROM deliveries WHERE channel_id='broken' AND status='failed'",
                )
                return bool(n == 4)

            await wait_for(failed, 10)
        # The slow channel (3 s per request) never held the fast one back.
        assert fast_done < 2.0, fast_done
        attempts = await scalar(
            sessionmaker,
            "SELECT count(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id "
            "WHERE d.channel_id = 'broken' AND a.http_status = 500",
        )
        assert attempts == 12
        err = await scalar(
            sessionmaker, "SELECT last_error FROM deliveries WHERE channel_id='broken' LIMIT 1"
        )
        assert "HTTP 500" in err
    finally:
        for r in (broken, slow, fast):
            r.stop()
