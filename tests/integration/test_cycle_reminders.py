"""Appraisal-cycle reminders end to end: scoring's scan over the real cycle state (finalised
through the HTTP app, PostgreSQL) with an injected clock, notify's relay and sender to a
webhook receiver (two real notify processes) and to SMTP (the specialist's own copy)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.notify.handlers.deliveries import list_deliveries
from services.notify.handlers.reminders import relay_reminders, reminder_delivery_key
from services.scoring.appraisal.reminder_scan import ReminderScanner
from services.scoring.appraisal.reminders import ReminderPolicy
from shared import reminders as store
from shared.db import raw_connection, session_scope
from shared.notify_api import DeliveryPage, ReminderDeliveryItem
from shared.webhooks import ReminderPayload, verify_webhook_signature
from tests.integration.notify_support import FakeClock, Receiver, Start
from tests.integration.test_appraisal_api import ADMIN, NOW, app, rows, seed_org
from tests.integration.test_notify_pipeline import RunningSender, add_channel, cfg
from tests.integration.test_notify_receivers import _Inbox
from tests.integration.test_scoring_api import seed_daily
from tests.kafka_helpers import wait_for
from tests.service_helpers import worker_port

__all__ = ["app"]  # the module-scoped scoring app of test_appraisal_api (Asia/Shanghai)

SECRET = "reminder-hook-secret"
Q3 = "2026Q3"
# NOW is 2026-10-05 10:00 in Shanghai; a scan "at day n" runs at that local time n days later.
DAY = dt.timedelta(days=1)


@pytest.fixture
async def client(app: FastAPI, clean_db: AsyncEngine) -> AsyncIterator[AsyncClient]:
    # The app's own hourly scan is stopped: these tests drive scans with their own clocks.
    scanner = app.state.reminders
    assert isinstance(scanner, ReminderScanner)
    scanner.stop()
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
) -> list[ReminderScanner]:
    """``n`` scoring replicas' scanners on one clock (the defaults: 14, 7 and 7 days)."""
    return [
        ReminderScanner(sm, app.state.config, ReminderPolicy(), clock=clock, interval=3600)
        for _ in range(n)
    ]


async def scan_all(replicas: list[ReminderScanner]) -> int:
    """Every replica scans at once; returns how many reminders were new in all."""
    results = await asyncio.gather(*(r.scan_once() for r in replicas))
    return sum(r or 0 for r in results)


async def stored(sm: async_sessionmaker[AsyncSession]) -> list[store.Reminder]:
    async with session_scope(sm) as session:
        return await store.list_reminders(await raw_connection(session))


async def count(sm: async_sessionmaker[AsyncSession], sql: str) -> int:
    async with sm() as session:
        return int((await session.execute(text(sql))).scalar_one())


def channel(base: str, url: str, team: str | None) -> str:
    r = httpx.post(
        base + "/v1/channels",
        headers=ADMIN,
        json={
            "name": "hook",
            "kind": "webhook",
            "team_id": team,
            "config": {"url": url, "secret": SECRET},
        },
        timeout=10,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def meeting(client: AsyncClient, sid: str, held_on: str) -> None:
    body = {"quarter": Q3, "held_on": held_on, "participants": ["ann", sid], "notes": "回顾"}
    r = await client.post(f"/v1/specialists/{sid}/meetings", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text


async def test_a_meeting_not_held_reminds_the_team_once_per_period_until_held(
    app: FastAPI,
    client: AsyncClient,
    clean_db: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    notify_env: dict[str, str],
    start_notify: Start,
    hooks: tuple[Receiver, Receiver],
) -> None:
    team_hook, org_hook = hooks
    await seed_org(clean_db)  # north (ann): s1 Li Wei, s2 王芳; south: s3
    r = await client.post(f"/v1/appraisals/{Q3}/finalize?team=north", headers=ADMIN)
    assert r.status_code == 200, r.text
    await meeting(client, "s2", "2026-10-09")  # s2's meeting is held in time
    first = start_notify(notify_env)
    start_notify(notify_env)  # a second notify replica relays and sends too
    team_id = channel(first.url, team_hook.url + "/north", "north")
    channel(first.url, org_hook.url + "/org", None)

    clock = FakeClock(NOW)
    replicas = scanners(app, sessionmaker, clock)
    assert await scan_all(replicas) == 0
    clock.advance(days=13)  # 18 Oct: 13 days after finalisation
    assert await scan_all(replicas) == 0
    clock.advance(days=1)  # 19 Oct: 14 days, no held meeting for s1
    assert await scan_all(replicas) == 1
    await wait_for(lambda: len(team_hook.snapshot()) == 1, 20)
    req = team_hook.snapshot()[0]
    assert verify_webhook_signature(SECRET, req.body, req.headers["X-KPI-Signature"])
    (reminder,) = await stored(sessionmaker)
    assert req.headers["X-KPI-Delivery"] == reminder_delivery_key(
        reminder.id, "supervisor", team_id
    )
    body = ReminderPayload.model_validate_json(req.body)
    assert (body.type, body.kind, body.audience, body.specialist_id, body.name) == (
        "cycle_reminder",
        "meeting_not_held",
        "supervisor",
        "s1",
        "Li Wei",
    )
    assert (body.team_id, body.quarter, body.due) == ("north", Q3, dt.date(2026, 10, 19))
    assert body.detail == {
        "finalized_on": "2026-10-05",
        "days_since_finalized": 14,
        "meeting_status": "none",
    }
    assert body.message.startswith(
        "[MEETING REMINDER] Li Wei (s1): 2026Q3 feedback meeting not held yet"
    )

    # Scanning again (both replicas, later the same day and for six more days) adds nothing.
    for _ in range(7):
        assert await scan_all(replicas) == 0
        clock.advance(hours=20)
    clock.now = NOW + 21 * DAY  # 26 Oct: the second period
    assert await scan_all(replicas) == 1
    await wait_for(lambda: len(team_hook.snapshot()) == 2, 20)
    assert (
        ReminderPayload.model_validate_json(team_hook.snapshot()[1].body).detail[
            "days_since_finalized"
        ]
        == 21
    )

    # Held: no further reminder, however long after.
    await meeting(client, "s1", "2026-10-27")
    for days in (28, 35, 60):
        clock.now = NOW + days * DAY
        assert await scan_all(replicas) == 0

    async def all_relayed() -> bool:
        return (
            await count(
                sessionmaker, "SELECT count(*) FROM cycle_reminders WHERE relayed_at IS NULL"
            )
            == 0
        )

    await wait_for(all_relayed, 20)
    await asyncio.sleep(1.0)  # a duplicate from the other replica would have arrived by now
    assert len(team_hook.snapshot()) == 2 and len(set(team_hook.keys())) == 2
    assert org_hook.snapshot() == []  # organisation-wide channels are admins': no reminders
    assert await count(sessionmaker, "SELECT count(*) FROM deliveries") == 2
    assert len(await stored(sessionmaker)) == 2


async def test_goals_due_and_overdue_plans_remind_the_team_and_the_specialist_by_email(
    app: FastAPI,
    client: AsyncClient,
    clean_db: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    hooks: tuple[Receiver, Receiver],
) -> None:
    team_hook, _ = hooks
    await seed_org(clean_db)
    r = await client.put("/v1/specialists/s1", json={"name": "Li Wei", "team_id": "north",
                                                      "aliases": {"email": "li.wei@example.com"}},
                         headers=ADMIN)  # fmt: skip
    assert r.status_code == 200, r.text
    # s1's Q4 plan: two goals due 20 Oct; customer satisfaction is met already, resolution not.
    plan = {"goals": [{"kpi": "resolution_rate", "target": 0.9, "due": "2026-10-20"},
                      {"kpi": "customer_satisfaction", "target": 0.85, "due": "2026-10-20"},
                      {"kpi": "followup_rate", "target": 0.8, "due": "2026-12-31"}]}  # fmt: skip
    r = await client.put("/v1/specialists/s1/plans/2026Q4", json=plan, headers=ADMIN)
    assert r.status_code == 200, r.text
    await seed_daily(
        clean_db,
        rows(
            "s1",
            dt.date(2026, 10, 2),
            [("customer_satisfaction", 19.0, 20), ("resolution_rate", 7.0, 10)],
        ),
    )
    # s2's Q3 plan ended 30 Sep and is still open: overdue. s3's is achieved: never reminded.
    late = {"goals": [{"kpi": "resolution_rate", "target": 0.9, "due": "2026-09-30"}]}
    for sid, status in (("s2", "open"), ("s3", "achieved")):
        r = await client.put(
            f"/v1/specialists/{sid}/plans/{Q3}", json={**late, "status": status}, headers=ADMIN
        )
        assert r.status_code == 200, r.text

    inbox = _Inbox()
    port = worker_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        await add_channel(sessionmaker, team_hook.url + "/north", cid="hook", team="north")
        mail = {
            "sender": "kpi@example.com",
            "recipients": ["ann@example.com"],
            "host": "127.0.0.1",
            "port": port,
        }
        await add_channel(sessionmaker, "", cid="mail", kind="email", team="north", config=mail)

        clock = FakeClock(NOW + 7 * DAY)  # 12 Oct: s1's goals are due in 8 days
        (scanner,) = scanners(app, sessionmaker, clock, 1)
        assert await scanner.scan_once() == 1  # s2's overdue plan only
        clock.advance(days=1)  # 13 Oct: due in 7 days
        assert await scanner.scan_once() == 1
        assert await scanner.scan_once() == 0
        reminders = {r.kind: r for r in await stored(sessionmaker)}
        assert set(reminders) == {"goal_due", "plan_overdue"}
        goal, overdue = reminders["goal_due"], reminders["plan_overdue"]
        assert (goal.specialist_id, goal.quarter, goal.due) == (
            "s1",
            "2026Q4",
            dt.date(2026, 10, 20),
        )
        assert [g["kpi"] for g in goal.subject["goals"]] == ["resolution_rate"]
        assert goal.subject["goals"][0]["value"] == 0.7 and goal.subject["days_left"] == 7
        assert (overdue.specialist_id, overdue.quarter, overdue.due) == (
            "s2",
            Q3,
            dt.date(2026, 9, 30),
        )
        assert overdue.subject["days_overdue"] == 12

        c = cfg()
        async with session_scope(sessionmaker) as session:
            # s2's overdue plan: webhook + ann's mail; s1's goals: those two + s1's own mail.
            assert await relay_reminders(session, c, clock()) == (2, 5)
        async with session_scope(sessionmaker) as session:
            assert await relay_reminders(session, c, clock()) == (0, 0)
        async with RunningSender(sessionmaker, c, clock):
            await wait_for(lambda: len(team_hook.snapshot()) == 2 and len(inbox.messages) == 3, 15)
        bodies = {
            b.kind: b
            for b in (ReminderPayload.model_validate_json(r.body) for r in team_hook.snapshot())
        }
        assert bodies["goal_due"].message.startswith(
            "[GOAL REMINDER] Li Wei (s1): 1 improvement-plan goal (2026Q4) due 2026-10-20"
        )
        assert (
            bodies["plan_overdue"].name == "王芳"
            and bodies["plan_overdue"].audience == "supervisor"
        )
        # (A subject folded right after "Subject:" reads back with a leading space here.)
        subjects = {(m["To"], str(m["Subject"]).strip()) for m in inbox.messages}
        assert subjects == {
            (
                "li.wei@example.com",
                "[GOAL REMINDER] 1 goal of your improvement plan (2026Q4) due 2026-10-20",
            ),
            (
                "ann@example.com",
                "[GOAL REMINDER] Li Wei (s1): 1 improvement-plan goal (2026Q4) due 2026-10-20",
            ),
            ("ann@example.com", "[PLAN OVERDUE] 王芳 (s2): improvement plan 2026Q3 is overdue"),
        }
        (mine,) = [m for m in inbox.messages if m["To"] == "li.wei@example.com"]
        assert mine["X-KPI-Delivery"] == reminder_delivery_key(goal.id, "specialist", "mail")
        text = mine.get_body(("plain",))
        assert text is not None and "See your progress and add progress notes" in text.get_content()

        # The delivery log names the reminders (validated against the documented models).
        async with session_scope(sessionmaker) as session:
            items, _ = await list_deliveries(
                session, c, status=None, team_ids=None, cursor=None, limit=100
            )
        page = DeliveryPage.model_validate({"items": items, "next_cursor": None})
        seen: list[tuple[Any, ...]] = []
        for delivery in page.items:
            assert delivery.alert_ids == [] and delivery.team_id == "north"
            (item,) = delivery.items
            assert isinstance(item, ReminderDeliveryItem)
            seen.append(
                (delivery.channel.id, item.reminder_kind, item.audience, item.specialist_id)
            )
        assert sorted(seen) == [
            ("hook", "goal_due", "supervisor", "s1"),
            ("hook", "plan_overdue", "supervisor", "s2"),
            ("mail", "goal_due", "specialist", "s1"),
            ("mail", "goal_due", "supervisor", "s1"),
            ("mail", "plan_overdue", "supervisor", "s2"),
        ]

        # Closing the plan (missed) stops the overdue reminders; the goal reminds again on
        # its due day (the next period) while still not met.
        r = await client.post(
            f"/v1/specialists/s2/plans/{Q3}/status", json={"status": "missed"}, headers=ADMIN
        )
        assert r.status_code == 200, r.text
        clock.now = NOW + 15 * DAY  # 20 Oct
        assert await scanner.scan_once() == 1
        assert [r.kind for r in await stored(sessionmaker)][-1] == "goal_due"
    finally:
        controller.stop()


async def test_off_means_nothing_and_the_app_runs_the_scan_as_a_task(
    app: FastAPI,
    client: AsyncClient,
    clean_db: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await seed_org(clean_db)
    r = await client.post(f"/v1/appraisals/{Q3}/finalize?team=north", headers=ADMIN)
    assert r.status_code == 200, r.text
    clock = FakeClock(NOW + 30 * DAY)
    off = ReminderScanner(
        sessionmaker, app.state.config, ReminderPolicy(enabled=False), clock=clock, interval=3600
    )
    assert await off.scan_once() == 0 and await stored(sessionmaker) == []

    # The periodic task: a first scan shortly after start, then one per interval; stopped
    # and awaited like the service's other tasks.
    task_names = {t.get_name() for t in app.state.runtime.tasks}
    assert "scoring-reminders" in task_names
    running = ReminderScanner(
        sessionmaker,
        app.state.config,
        ReminderPolicy(),
        clock=clock,
        interval=0.2,
        first_delay=0.05,
    )
    task = asyncio.create_task(running.run())
    await wait_for(lambda: running.recorded == 2, 10)  # s1 and s2: no meeting held
    clock.advance(days=7)
    await wait_for(lambda: running.recorded == 4, 10)
    running.stop()
    await asyncio.wait_for(task, 5)
    assert {(r.specialist_id, r.kind) for r in await stored(sessionmaker)} == {
        ("s1", "meeting_not_held"),
        ("s2", "meeting_not_held"),
    }
