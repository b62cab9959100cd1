"""Delivery retry budget (a duration, not a count), failed deliveries and resend, scoping."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.notify.handlers.deliveries import DeliveryResult, resend_delivery
from services.notify.retry import RetryPolicy
from shared.db import create_sessionmaker, session_scope, utcnow
from shared.notify_api import DeliveryDetail, DeliveryOut, DeliveryPage
from tests.integration.notify_support import (
    ProduceSnaps,
    Received,
    Receiver,
    Start,
    Switch,
    conforms,
    seed_two_teams,
    snapshot,
)
from tests.integration.test_notify_pipeline import RunningSender, add_channel, cfg, feed
from tests.kafka_helpers import wait_for
from tests.service_helpers import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SECRET = "deliveries-webhook-secret"


def refused(rec: Receiver) -> list[Received]:
    return [r for r in rec.snapshot() if r.headers.get("X-KPI-Delivery") and r.path == "/hook"]


async def rows(sm: async_sessionmaker[AsyncSession], sql: str, **params: Any) -> list[Any]:
    async with sm() as s:
        return list((await s.execute(text(sql), params)).mappings())


async def test_a_receiver_down_longer_than_the_old_attempt_budget_still_gets_it(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    # The old rule, 8 attempts from base 0.01 s, gave up after <= 1.27 s of downtime.
    switch = Switch()
    rec = Receiver(behaviour=switch).start()
    try:
        await add_channel(sessionmaker, rec.url + "/hook")
        c = cfg(retry=RetryPolicy(retry_for=dt.timedelta(seconds=60), base=0.01, cap=0.05))
        async with RunningSender(sessionmaker, c, utcnow):
            await feed(sessionmaker, c, utcnow(), snapshot("down1", utcnow()))
            await wait_for(
                lambda: (
                    len(rec.snapshot()) >= 12 and rec.snapshot()[-1].at - rec.snapshot()[0].at > 2.0
                ),
                30,
            )
            switch.up = True
            await wait_for(
                lambda: rows(sessionmaker, "SELECT 1 FROM deliveries WHERE status = 'sent'"), 15
            )
        got = rec.snapshot()
        assert len({r.headers["X-KPI-Delivery"] for r in got}) == 1
        attempts = await rows(
            sessionmaker, "SELECT attempt, outcome FROM delivery_attempts ORDER BY attempt"
        )
        assert len(attempts) == len(got) > 8
        assert [a["outcome"] for a in attempts] == ["error"] * (len(got) - 1) + ["sent"]
    finally:
        rec.stop()


async def test_past_its_budget_a_delivery_fails_loudly_and_a_resend_gets_a_fresh_one(
    sessionmaker: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="services.notify.sender")
    failed_metric = {"kind": "webhook", "outcome": "failed"}
    before = REGISTRY.get_sample_value("kpi_notify_deliveries_total", failed_metric) or 0.0
    rec = Receiver(behaviour=Switch()).start()
    retry_for = dt.timedelta(seconds=1.5)
    try:
        await add_channel(sessionmaker, rec.url + "/hook", cid="ops-hook")
        c = cfg(retry=RetryPolicy(retry_for=retry_for, base=0.05, cap=0.3))
        failed_sql = "SELECT * FROM deliveries WHERE status = 'failed'"
        async with RunningSender(sessionmaker, c, utcnow):
            await feed(sessionmaker, c, utcnow(), snapshot("gone1", utcnow()))
            await wait_for(lambda: rows(sessionmaker, failed_sql), 15)
            (first,) = await rows(sessionmaker, failed_sql)
            deadline = first["created_at"] + retry_for
            # The last retry was scheduled at the deadline at the latest, never after it.
            assert first["next_attempt_at"] <= deadline
            log = await rows(
                sessionmaker,
                "SELECT attempt, at, outcome FROM delivery_attempts ORDER BY attempt",
            )
            assert len(log) == first["attempts"] >= 2
            # Failed only once the budget was spent; no attempt after that one.
            assert [a["outcome"] for a in log[:-1]] == ["error"] * (len(log) - 1)
            assert log[-1]["outcome"] == "failed" and log[-1]["at"] >= deadline
            assert all(a["at"] < deadline for a in log[:-1])
            assert "HTTP 500" in first["last_error"]

            # A resend with the receiver still down: a whole new budget from the resend.
            async with session_scope(sessionmaker) as s:
                result, out = await resend_delivery(
                    s, c, first["id"], "ops-admin", utcnow(), lambda team: True
                )
            assert result is DeliveryResult.OK and out is not None
            assert out["status"] == "pending" and out["resent_by"] == "ops-admin"
            await wait_for(lambda: rows(sessionmaker, failed_sql), 15)
        (second,) = await rows(sessionmaker, failed_sql)
        assert second["delivery_key"] == first["delivery_key"]
        assert second["resends"] == 1 and second["attempts_before_resend"] == first["attempts"]
        log = await rows(
            sessionmaker, "SELECT attempt, at, outcome FROM delivery_attempts ORDER BY id"
        )
        assert [a["attempt"] for a in log] == list(range(1, second["attempts"] + 1))
        assert second["attempts"] >= first["attempts"] + 2
        assert log[-1]["at"] >= second["resent_at"] + retry_for
        # Never silent: a WARNING naming the delivery and the channel, and the metric.
        warnings = [r.getMessage() for r in caplog.records if "FAILED" in r.getMessage()]
        assert len(warnings) == 2, warnings
        assert f"delivery {first['id']} " in warnings[0] and "ops-hook" in warnings[0]
        assert "retry budget ended" in warnings[0] and SECRET not in warnings[0]
        after = REGISTRY.get_sample_value("kpi_notify_deliveries_total", failed_metric)
        assert after == before + 2
    finally:
        rec.stop()


async def test_failed_deliveries_are_listed_per_team_and_resent_with_the_same_key(
    clean_db: AsyncEngine,
    notify_env: dict[str, str],
    start_notify: Start,
    produce_snaps: ProduceSnaps,
) -> None:
    tokens = await seed_two_teams(create_sessionmaker(clean_db))
    ann_h = {"Authorization": f"Bearer {tokens['ann']}"}
    switch = Switch()
    rec = Receiver(behaviour=switch).start()
    env = {
        **notify_env,
        "KPI_NOTIFY_RETRY_FOR": "2s",
        "KPI_NOTIFY_RETRY_BASE_SECONDS": "0.05",
        "KPI_NOTIFY_RETRY_MAX_SECONDS": "0.2",
    }
    svc = start_notify(env)
    try:
        async with httpx.AsyncClient(base_url=svc.url, timeout=10) as c:
            r = await c.post(
                "/v1/channels",
                headers=ADMIN,
                json={
                    "name": "ops hook",
                    "kind": "webhook",
                    "config": {"url": rec.url + "/hook", "secret": SECRET},
                },
            )
            assert r.status_code == 201, r.text
            now = dt.datetime.now(dt.UTC)
            await produce_snaps([snapshot("n1", now), snapshot("s1", now)])

            async def failed(h: dict[str, str], **q: str) -> list[dict[str, Any]]:
                r = await c.get("/v1/deliveries", params={"status": "failed", **q}, headers=h)
                assert r.status_code == 200, r.text
                conforms(DeliveryPage, r.json())  # the documented shape (extra=forbid)
                items: list[dict[str, Any]] = r.json()["items"]
                return items

            async def both_failed() -> bool:
                return len(await failed(ADMIN)) == 2

            await wait_for(both_failed, 30)
            everything = await failed(ADMIN)
            by_team = {d["team_id"]: d for d in everything}
            north, south = by_team["north"], by_team["south"]
            assert north["channel"]["name"] == "ops hook" and north["channel"]["kind"] == "webhook"
            assert SECRET not in str(everything) and "config" not in north["channel"]
            assert north["attempts"] >= 2 and "HTTP 500" in north["last_error"]
            assert north["last_attempt_at"] and north["created_at"] and north["retry_until"]
            (item,) = north["items"]
            assert (item["specialist_id"], item["name"]) == ("n1", "Nina")
            assert item["kpi"] == "customer_satisfaction" and item["kind"] == "firing"
            assert north["alert_ids"] == [item["alert_id"]]

            # Pages: newest first, a cursor to the rest.
            page1 = await c.get("/v1/deliveries", params={"limit": 1}, headers=ADMIN)
            cursor = page1.json()["next_cursor"]
            page2 = await c.get("/v1/deliveries", params={"cursor": cursor}, headers=ADMIN)
            ids = [d["id"] for d in page1.json()["items"] + page2.json()["items"]]
            assert ids == sorted({north["id"], south["id"]}, reverse=True)
            assert page2.json()["next_cursor"] is None
            bad = await c.get("/v1/deliveries", params={"cursor": "x"}, headers=ADMIN)
            assert bad.status_code == 422
            assert bad.json()["errors"][0]["loc"] == ["query", "cursor"]

            # Scoping: ann (north) sees and resends north's only.
            assert [d["id"] for d in await failed(ann_h)] == [north["id"]]
            assert (await c.get("/v1/deliveries?team=south", headers=ann_h)).status_code == 404
            svc_h = {"Authorization": f"Bearer {tokens['service']}"}
            assert (await c.get("/v1/deliveries", headers=svc_h)).status_code == 403
            other = await c.post(f"/v1/deliveries/{south['id']}/resend", headers=ann_h)
            assert other.status_code == 404
            assert (await c.get(f"/v1/deliveries/{south['id']}", headers=ann_h)).status_code == 404
            assert (await c.post("/v1/deliveries/999999/resend", headers=ADMIN)).status_code == 404
            assert (await c.post("/v1/deliveries/abc/resend", headers=ADMIN)).status_code == 422

            # The receiver is back; ann resends: same row, same key, fresh budget.
            switch.up = True
            refused_keys = {r.headers["X-KPI-Delivery"] for r in refused(rec)}
            r = await c.post(f"/v1/deliveries/{north['id']}/resend", headers=ann_h)
            assert r.status_code == 200, r.text
            resent = r.json()
            conforms(DeliveryOut, resent)  # no attempt_log here: that is the one-delivery view
            assert resent["status"] == "pending" and resent["resent_by"] == "ann"
            assert resent["delivery_key"] == north["delivery_key"] and resent["resends"] == 1
            until = dt.datetime.fromisoformat
            assert until(resent["retry_until"]) > until(north["retry_until"])

            async def sent(delivery_id: int) -> bool:
                r = await c.get(f"/v1/deliveries/{delivery_id}", headers=ADMIN)
                return bool(r.json()["status"] == "sent")

            await wait_for(lambda: sent(north["id"]), 15)
            one = (await c.get(f"/v1/deliveries/{north['id']}", headers=ADMIN)).json()
            assert conforms(DeliveryDetail, one).attempt_log[-1].outcome == "sent"
            key = north["delivery_key"]
            same_key = [r for r in rec.snapshot() if r.headers["X-KPI-Delivery"] == key]
            assert key in refused_keys and len(same_key) == north["attempts"] + 1
            again = await c.post(f"/v1/deliveries/{north['id']}/resend", headers=ann_h)
            assert again.status_code == 409
            # Every attempt stays recorded, also in the alert's delivery log.
            log = await c.get(f"/v1/alerts/{item['alert_id']}/deliveries", headers=ann_h)
            (entry,) = log.json()["items"]
            outcomes = [a["outcome"] for a in entry["attempt_log"]]
            assert outcomes == ["error"] * (north["attempts"] - 1) + ["failed", "sent"]
            assert entry["resent_by"] == "ann"
            assert [d["id"] for d in await failed(ADMIN)] == [south["id"]]

            # The admin resends the other team's.
            r = await c.post(f"/v1/deliveries/{south['id']}/resend", headers=ADMIN)
            assert r.status_code == 200 and r.json()["resent_by"] == "bootstrap-admin"
            await wait_for(lambda: sent(south["id"]), 15)
            assert await failed(ADMIN) == []
    finally:
        rec.stop()
