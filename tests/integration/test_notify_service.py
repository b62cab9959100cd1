"""Notify as real processes: outbox crash tests, two replicas, REST, auth scoping, SSE."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from kpi.stack import ServiceProcess
from shared.db import create_sessionmaker
from shared.notify_api import (
    AlertDeliveries,
    AlertList,
    AlertOut,
    SilenceList,
    SilenceOut,
)
from tests.integration.notify_support import (
    ProduceSnaps,
    Received,
    Receiver,
    Start,
    conforms,
    seed_two_teams,
    snapshot,
)
from tests.kafka_helpers import wait_for
from tests.service_helpers import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SECRET = "webhook-secret-123"


def _kill(svc: ServiceProcess) -> None:
    if svc.proc is not None:
        os.killpg(svc.proc.pid, signal.SIGKILL)
        svc.proc.wait(10)
        svc.proc = None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


def _webhook(svc: ServiceProcess, url: str, team: str | None = None) -> dict[str, Any]:
    r = httpx.post(
        svc.url + "/v1/channels",
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
    return dict(r.json())


async def _count(engine: AsyncEngine, sql: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def test_crash_between_commit_and_send_then_restart_sends_once(
    clean_db: AsyncEngine,
    notify_env: dict[str, str],
    start_notify: Start,
    receiver: Receiver,
    produce_snaps: ProduceSnaps,
) -> None:
    # Sender off = the process commits state + outbox and dies before any send.
    svc = start_notify({**notify_env, "KPI_NOTIFY_SENDER": "false"})
    _webhook(svc, receiver.url + "/hook")
    await produce_snaps([snapshot(f"p{i}", _now()) for i in range(3)])
    await wait_for(lambda: _pending(clean_db, 3), 40)
    _kill(svc)
    assert receiver.snapshot() == []
    svc = start_notify(notify_env)
    await wait_for(lambda: len(receiver.snapshot()) == 3, 20)
    # A clean restart re-evaluates everything (tick at start-up) and re-notifies nothing.
    svc.stop()
    svc = start_notify(notify_env)
    await produce_snaps([snapshot(f"p{i}", _now()) for i in range(3)])
    await wait_for(lambda: _states_observed(clean_db), 20)
    await asyncio.sleep(2.0)  # bounded quiet period: a re-notification would show here
    assert len(receiver.snapshot()) == 3
    assert len(set(receiver.keys())) == 3


async def _pending(engine: AsyncEngine, n: int) -> bool:
    return await _count(engine, "SELECT count(*) FROM deliveries WHERE status='pending'") == n


async def _states_observed(engine: AsyncEngine) -> bool:
    # All three alerts saw the newer snapshot (last_obs refreshed) => the batch was evaluated.
    newest = await _count(
        engine,
        "SELECT count(*) FROM alert_states "
        "WHERE (last_obs->>'observed_at')::timestamptz > now() - interval '30 seconds' "
        "AND updated_at > now() - interval '10 seconds'",
    )
    return newest == 3


async def test_crash_after_send_resends_with_same_key(
    clean_db: AsyncEngine,
    notify_env: dict[str, str],
    start_notify: Start,
    receiver: Receiver,
    produce_snaps: ProduceSnaps,
) -> None:
    holder: dict[str, ServiceProcess] = {}

    def kill_on_first(req: Received) -> tuple[int, bytes, float]:
        if len(receiver.requests) == 0 and "svc" in holder:
            _kill(holder.pop("svc"))  # the receiver has it; the sender never learns
        return 200, b"{}", 0.0

    receiver.behaviour = kill_on_first
    notify_env = {**notify_env, "KPI_NOTIFY_LEASE_SECONDS": "2", "KPI_NOTIFY_SEND_TIMEOUT": "1"}
    svc = start_notify(notify_env)
    _webhook(svc, receiver.url + "/hook")
    holder["svc"] = svc
    await produce_snaps([snapshot("q1", _now())])
    await wait_for(lambda: len(receiver.snapshot()) == 1 and "svc" not in holder, 40)
    assert svc.proc is None
    start_notify(notify_env)
    await wait_for(lambda: len(receiver.snapshot()) == 2, 30)
    keys = receiver.keys()
    assert keys[0] == keys[1] and keys[0]
    assert receiver.snapshot()[0].body == receiver.snapshot()[1].body
    await wait_for(
        lambda: _count(clean_db, "SELECT count(*) FROM deliveries WHERE status='sent'"), 10
    )


async def test_two_replicas_1000_alerts_no_duplicate_delivery(
    clean_db: AsyncEngine,
    notify_env: dict[str, str],
    start_notify: Start,
    receiver: Receiver,
    produce_snaps: ProduceSnaps,
) -> None:
    a = start_notify(notify_env)
    start_notify(notify_env)
    _webhook(a, receiver.url + "/hook")
    now = _now()
    await produce_snaps([snapshot(f"r{i:04d}", now) for i in range(1000)])
    await wait_for(lambda: len(receiver.snapshot()) >= 1000, 90)
    await asyncio.sleep(1.0)  # late duplicates would arrive here
    keys = receiver.keys()
    assert len(keys) == 1000, len(keys)
    assert len(set(keys)) == 1000
    ids = {r.json()["alert_id"] for r in receiver.snapshot()}
    assert len(ids) == 1000
    workers = await _count(clean_db, "SELECT count(DISTINCT worker) FROM delivery_attempts")
    print(f"two replicas: 1000 alerts, 1000 deliveries, 0 duplicates, {workers} senders")


async def test_rest_channels_alerts_ack_silences_deliveries_and_stream(
    clean_db: AsyncEngine,
    notify_env: dict[str, str],
    start_notify: Start,
    receiver: Receiver,
    produce_snaps: ProduceSnaps,
) -> None:
    tokens = await seed_two_teams(create_sessionmaker(clean_db))
    service = tokens["service"]
    ann_h = {"Authorization": f"Bearer {tokens['ann']}"}
    bo_h = {"Authorization": f"Bearer {tokens['bo']}"}
    svc = start_notify(notify_env)
    team = await asyncio.to_thread(_channels_phase, svc, receiver, ann_h, bo_h)
    # SSE: ann's stream sees north's transition, not south's.
    events: list[dict[str, Any]] = []

    async def listen() -> None:
        async with (
            httpx.AsyncClient(base_url=svc.url, timeout=None) as ac,
            ac.stream("GET", "/v1/alerts/stream", headers=ann_h) as resp,
        ):
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                if line.startswith("data: "):
                    events.append(orjson.loads(line[6:]))

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0.5)
    now = _now()
    await produce_snaps([snapshot("s1", now), snapshot("n1", now)])
    await wait_for(lambda: len(receiver.snapshot()) >= 3, 30)  # org x2 + north robot x1
    await wait_for(lambda: any(e["specialist_id"] == "n1" for e in events), 10)
    listener.cancel()
    assert all(e["team_id"] == "north" for e in events)
    robot = [r for r in receiver.snapshot() if r.path.startswith("/robot/")]
    assert len(robot) == 1 and "sign=" in robot[0].path
    assert robot[0].json()["msgtype"] == "markdown"
    assert "Nina" in robot[0].json()["markdown"]["text"]
    await asyncio.to_thread(_alerts_phase, svc, team, ann_h, bo_h, service, now)
    logs = await asyncio.to_thread(Path(svc.log_path).read_text, errors="replace")
    for secret in (SECRET, "TOPSECRET", "SECdingding"):
        assert secret not in logs


def _channels_phase(
    svc: ServiceProcess, rec: Receiver, ann_h: dict[str, str], bo_h: dict[str, str]
) -> dict[str, Any]:
    with httpx.Client(base_url=svc.url, timeout=10) as c:
        # Channels: admin only, validated, secrets never returned.
        bad = c.post(
            "/v1/channels",
            headers=ADMIN,
            json={"name": "x", "kind": "webhook", "config": {"url": "ftp://x"}},
        )
        assert bad.status_code == 422
        locs = [tuple(d["loc"]) for d in bad.json()["errors"]]
        assert ("body", "config", "url") in locs and ("body", "config", "secret") in locs
        unknown = c.post(
            "/v1/channels",
            headers=ADMIN,
            json={
                "name": "x",
                "kind": "slack",
                "team_id": "nope",
                "config": {"url": "https://hooks.slack.com/services/T/B/XYZ"},
            },
        )
        assert unknown.status_code == 422 and "team_id" in unknown.text
        forbidden = c.post(
            "/v1/channels",
            headers=ann_h,
            json={"name": "x", "kind": "slack", "config": {"url": "https://h/x"}},
        )
        assert forbidden.status_code == 403
        org = _webhook(svc, rec.url + "/org-token-abc")
        team: dict[str, Any] = c.post(
            "/v1/channels",
            headers=ADMIN,
            json={
                "name": "north robot",
                "kind": "dingtalk",
                "team_id": "north",
                "lang": "zh-CN",
                "config": {
                    "url": rec.url + "/robot/send?access_token=TOPSECRET",
                    "secret": "SECdingding",
                },
            },
        ).json()
        listing = c.get("/v1/channels", headers=ADMIN)
        assert listing.status_code == 200
        for blob in (listing.text, str(org), str(team)):
            assert SECRET not in blob and "TOPSECRET" not in blob
            assert "SECdingding" not in blob and "org-token-abc" not in blob
        assert [ch["id"] for ch in c.get("/v1/channels", headers=ann_h).json()] == [team["id"]]
        assert c.get("/v1/channels", headers=bo_h).json() == []
        # PUT with the masked config keeps the stored secrets (the robot still signs below).
        upd = c.put(
            f"/v1/channels/{team['id']}",
            headers=ADMIN,
            json={
                "name": "north robot 2",
                "kind": "dingtalk",
                "team_id": "north",
                "lang": "zh-CN",
                "config": team["config"],
            },
        )
        assert upd.status_code == 200 and upd.json()["name"] == "north robot 2"
    return team


def _alerts_phase(
    svc: ServiceProcess,
    team: dict[str, Any],
    ann_h: dict[str, str],
    bo_h: dict[str, str],
    service: str,
    now: dt.datetime,
) -> None:
    with httpx.Client(base_url=svc.url, timeout=10) as c:
        # Alerts list is scoped; a team filter outside your teams is 404, as for an unknown team.
        # Every body is exactly its documented model (shared.notify_api, extra=forbid).
        all_open = conforms(AlertList, c.get("/v1/alerts?state=open", headers=ADMIN).json())
        all_open = [a.model_dump(mode="json") for a in all_open.items]
        assert {a["specialist_id"] for a in all_open} == {"n1", "s1"}
        mine = c.get("/v1/alerts", headers=ann_h).json()["items"]
        assert [a["specialist_id"] for a in mine] == ["n1"]
        assert c.get("/v1/alerts?team=south", headers=ann_h).status_code == 404
        assert c.get("/v1/alerts?state=bogus", headers=ADMIN).status_code == 422
        svc_h = {"Authorization": f"Bearer {service}"}
        assert c.get("/v1/alerts", headers=svc_h).status_code == 403
        assert c.get("/v1/alerts").status_code == 401
        n1 = mine[0]["alert_id"]
        s1 = next(a["alert_id"] for a in all_open if a["specialist_id"] == "s1")
        # Ack: own team only (another team's alert is as unknown: 404).
        assert c.post(f"/v1/alerts/{s1}/ack", headers=ann_h).status_code == 404
        acked = c.post(f"/v1/alerts/{n1}/ack", headers=ann_h)
        assert acked.status_code == 200 and acked.json()["acked_by"] == "ann"
        assert conforms(AlertOut, acked.json()).acked_at is not None
        one = c.get(f"/v1/alerts/{n1}", headers=ann_h)
        assert one.status_code == 200 and conforms(AlertOut, one.json()).alert_id == n1
        assert one.json() == acked.json()
        assert c.post("/v1/alerts/nope/ack", headers=ADMIN).status_code == 404
        # Delivery log with every attempt.
        deadline = time.monotonic() + 10
        while True:
            log = c.get(f"/v1/alerts/{n1}/deliveries", headers=ann_h).json()["items"]
            if all(d["status"] == "sent" for d in log) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert {d["channel_kind"] for d in log} == {"webhook", "dingtalk"}
        assert all(d["status"] == "sent" and len(d["attempt_log"]) >= 1 for d in log)
        conforms(AlertDeliveries, c.get(f"/v1/alerts/{n1}/deliveries", headers=ann_h).json())
        assert c.get(f"/v1/alerts/{s1}/deliveries", headers=ann_h).status_code == 404
        # Silences.
        until = (now + dt.timedelta(hours=1)).isoformat()
        other = c.post("/v1/silences", headers=ann_h, json={"specialist_id": "s1", "until": until})
        assert other.status_code == 404
        org_wide = c.post("/v1/silences", headers=ann_h, json={"kpi": "nps", "until": until})
        assert org_wide.status_code == 403
        assert c.post("/v1/silences", headers=ann_h, json={"until": until}).status_code == 422
        sil = c.post(
            "/v1/silences",
            headers=ann_h,
            json={"specialist_id": "n1", "until": until, "comment": "on leave"},
        )
        assert sil.status_code == 201, sil.text
        sid = conforms(SilenceOut, sil.json()).id
        listed = conforms(SilenceList, c.get("/v1/silences", headers=ann_h).json())
        assert [x.id for x in listed.items] == [sid] and listed.items[0].comment == "on leave"
        assert c.get("/v1/silences", headers=bo_h).json()["items"] == []
        assert c.delete(f"/v1/silences/{sid}", headers=bo_h).status_code == 404
        assert c.delete(f"/v1/silences/{sid}", headers=ann_h).status_code == 204
        # Channel delete.
        assert c.delete(f"/v1/channels/{team['id']}", headers=ADMIN).status_code == 204
        assert c.get(f"/v1/channels/{team['id']}", headers=ADMIN).status_code == 404
