"""Platform-health incidents reach organisation-wide channels through real notify processes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.handlers.deliveries import get_delivery, list_deliveries
from services.notify.health_relay import incident_delivery_key, relay_incidents
from shared import health
from shared.db import raw_connection, session_scope
from shared.notify_api import DeliveryDetail, DeliveryPage, IncidentDeliveryItem
from shared.webhooks import verify_webhook_signature
from tests.integration.notify_support import Receiver, Start
from tests.integration.test_notify_pipeline import RunningSender, add_channel, cfg
from tests.integration.test_notify_receivers import _Inbox
from tests.kafka_helpers import wait_for
from tests.service_helpers import ADMIN_TOKEN, worker_port

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SECRET = "incident-hook-secret"


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    org, team = Receiver().start(), Receiver().start()
    yield org, team
    org.stop()
    team.stop()


def _channel(base: str, url: str, team: str | None = None) -> str:
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


async def _open(
    sm: async_sessionmaker[AsyncSession], key: str, kind: str, summary: str = "it happened"
) -> health.Incident:
    async with session_scope(sm) as session:
        return await health.open_incident(
            await raw_connection(session), key=key, kind=kind, service="scoring", summary=summary
        )


async def _fetch(sm: async_sessionmaker[AsyncSession], sql: str, **params: Any) -> list[Any]:
    async with sm() as session:
        return list((await session.execute(text(sql), params)).all())


def _bodies(rec: Receiver) -> list[dict[str, Any]]:
    return [r.json() for r in rec.snapshot()]


async def test_each_transition_reaches_org_channels_once(
    sessionmaker: async_sessionmaker[AsyncSession],
    notify_env: dict[str, str],
    start_notify: Start,
    receivers: tuple[Receiver, Receiver],
) -> None:
    org, team = receivers
    async with session_scope(sessionmaker) as session:
        await session.execute(text("INSERT INTO teams (id, name) VALUES ('north', 'North')"))
    svc = start_notify(notify_env)
    org_id = _channel(svc.url, org.url + "/org")
    team_id = _channel(svc.url, team.url + "/team", team="north")

    # Opened: one firing notice, signed, to the organisation's channel only.
    stall = await _open(sessionmaker, "stall:scoring", health.STALL, "scoring stalled")
    await wait_for(lambda: len(org.snapshot()) == 1, 20)
    req = org.snapshot()[0]
    assert verify_webhook_signature(SECRET, req.body, req.headers["X-KPI-Signature"])
    assert req.headers["X-KPI-Delivery"] == incident_delivery_key(stall.id, "firing", org_id)
    body = req.json()
    assert set(body) == {
        "type",
        "incident_id",
        "status",
        "kind",
        "service",
        "summary",
        "detail",
        "opened_at",
        "resolved_at",
        "occurrences",
        "message",
    }
    assert (body["type"], body["incident_id"], body["status"], body["kind"]) == (
        "platform_incident",
        stall.id,
        "firing",
        "stall",
    )
    assert body["summary"] == "scoring stalled" and body["resolved_at"] is None
    assert body["message"].startswith("[PLATFORM] KPI pipeline stalled · scoring")

    # A recurrence while open says nothing new; a later incident proves the relay ran since.
    again = await _open(sessionmaker, "stall:scoring", health.STALL, "still stalled")
    assert again.id == stall.id and again.occurrences == 2
    marker = await _open(sessionmaker, "poison:scoring", health.POISON)
    await wait_for(lambda: len(org.snapshot()) == 2, 20)
    assert _bodies(org)[1]["incident_id"] == marker.id

    # The condition clears by itself: one resolved notice.
    async with session_scope(sessionmaker) as session:
        assert await health.resolve_incident(await raw_connection(session), "stall:scoring")
    await wait_for(lambda: len(org.snapshot()) == 3, 20)
    last = _bodies(org)[2]
    assert (last["incident_id"], last["status"]) == (stall.id, "resolved")
    assert last["resolved_at"] is not None and last["occurrences"] == 2
    assert org.keys()[2] == incident_delivery_key(stall.id, "resolved", org_id)

    # An admin dismisses an event incident: relayed (notified), but nobody is told.
    reset = await _open(sessionmaker, "log_reset:kpi-scoring:kpi.events", health.LOG_RESET)
    await wait_for(lambda: len(org.snapshot()) == 4, 20)
    async with session_scope(sessionmaker) as session:
        assert await health.dismiss_incident(await raw_connection(session), reset.id, by="ann")

    async def relayed() -> bool:
        rows = await _fetch(
            sessionmaker, "SELECT notified FROM platform_incidents WHERE id = :i", i=reset.id
        )
        return bool(rows[0][0] == "resolved")

    await wait_for(relayed, 20)
    rows = await _fetch(
        sessionmaker,
        "SELECT channel_id, group_key, alert_ids, team_id FROM deliveries ORDER BY id",
    )
    # Four notices, all for the organisation's channel, none carrying an alert.
    assert [(r[0], r[2], r[3]) for r in rows] == [(org_id, [], None)] * 4
    assert [r[1].split("|")[0] for r in rows] == [
        f"platform_incident:{i}" for i in (stall.id, marker.id, stall.id, reset.id)
    ]
    assert len(org.snapshot()) == 4 and [b["status"] for b in _bodies(org)].count("resolved") == 1
    assert team.snapshot() == [] and team_id not in {r[0] for r in rows}


async def test_two_replicas_relay_each_transition_once(
    sessionmaker: async_sessionmaker[AsyncSession],
    notify_env: dict[str, str],
    start_notify: Start,
    receivers: tuple[Receiver, Receiver],
) -> None:
    org, _ = receivers
    first = start_notify(notify_env)
    start_notify(notify_env)
    _channel(first.url, org.url + "/org")
    n = 25
    opened = [await _open(sessionmaker, f"stall:g{i}", health.STALL) for i in range(n)]
    await wait_for(lambda: len(org.snapshot()) >= n, 30)
    for incident in opened:
        async with session_scope(sessionmaker) as session:
            await health.resolve_incident(await raw_connection(session), incident.key)
    await wait_for(lambda: len(org.snapshot()) >= 2 * n, 30)

    async def all_relayed() -> bool:
        rows = await _fetch(
            sessionmaker, "SELECT count(*) FROM platform_incidents WHERE notified = 'resolved'"
        )
        return bool(rows[0][0] == n)

    await wait_for(all_relayed, 20)
    transitions = [(b["incident_id"], b["status"]) for b in _bodies(org)]
    assert len(transitions) == 2 * n and len(set(transitions)) == 2 * n
    assert set(transitions) == {(i.id, s) for i in opened for s in ("firing", "resolved")}
    assert len(set(org.keys())) == 2 * n
    rows = await _fetch(sessionmaker, "SELECT count(*) FROM deliveries")
    assert rows[0][0] == 2 * n


async def test_chat_robots_and_email_get_incident_notices(
    sessionmaker: async_sessionmaker[AsyncSession], receivers: tuple[Receiver, Receiver]
) -> None:
    """The in-process relay and sender: native robot payloads and an SMTP mail per notice."""
    rec, _ = receivers
    inbox = _Inbox()
    port = worker_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        await add_channel(
            sessionmaker, "", cid="ding", kind="dingtalk", config={"url": rec.url + "/ding?t=T"}
        )
        await add_channel(sessionmaker, "", cid="slack", kind="slack", config={"url": rec.url})
        mail = {"sender": "kpi@example.com", "recipients": ["ops@example.com"]}
        await add_channel(
            sessionmaker,
            "",
            cid="mail",
            kind="email",
            config={**mail, "host": "127.0.0.1", "port": port},
        )
        incident = await _open(sessionmaker, "offset_gap:kpi-scoring", health.OFFSET_GAP, "lost 5")
        c = cfg()
        async with session_scope(sessionmaker) as session:
            assert await relay_incidents(session, c, dt.datetime.now(dt.UTC)) == (1, 3)
        async with session_scope(sessionmaker) as session:
            assert await relay_incidents(session, c, dt.datetime.now(dt.UTC)) == (0, 0)
        async with RunningSender(sessionmaker, c, lambda: dt.datetime.now(dt.UTC)):
            await wait_for(lambda: len(rec.snapshot()) == 2 and len(inbox.messages) == 1, 10)
        by_path = {r.path.split("?")[0]: r.json() for r in rec.snapshot()}
        title = "[PLATFORM] Records lost to retention · scoring"
        assert by_path["/ding"]["markdown"]["title"] == title
        assert "lost 5" in by_path["/ding"]["markdown"]["text"]
        assert by_path["/"]["text"] == title
        msg = inbox.messages[0]
        assert msg["Subject"] == title and msg["To"] == "ops@example.com"
        assert msg["X-KPI-Delivery"] == incident_delivery_key(incident.id, "firing", "mail")
        assert all(r.headers.get("X-KPI-Delivery") for r in rec.snapshot())
        # The admin's delivery log shows the incident notices (it answered 500 on them before).
        async with session_scope(sessionmaker) as session:
            items, _ = await list_deliveries(
                session, c, status=None, team_ids=None, cursor=None, limit=100
            )
            _, one = await get_delivery(session, c, items[0]["id"], lambda _team: True)
        page = DeliveryPage.model_validate({"items": items, "next_cursor": None})
        assert {d.channel.id for d in page.items} == {"ding", "slack", "mail"}
        for delivery in page.items:
            assert delivery.alert_ids == []
            (item,) = delivery.items
            assert isinstance(item, IncidentDeliveryItem)
            assert (item.incident_id, item.kind) == (incident.id, "firing")
            assert (item.incident_kind, item.summary) == (health.OFFSET_GAP, "lost 5")
        assert DeliveryDetail.model_validate(one).items == page.items[0].items
    finally:
        controller.stop()
