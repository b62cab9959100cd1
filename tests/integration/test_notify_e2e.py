"""End to end: raw events -> ingest -> scoring -> kpi.scores -> notify -> a local webhook."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from kpi.stack import ServiceProcess
from shared.topics import Topics
from shared.webhooks import verify_webhook_signature
from tests.integration.notify_support import Receiver
from tests.kafka_helpers import produce, wait_for
from tests.service_helpers import ADMIN_TOKEN, service_env, start_service, wait_status


@pytest.fixture
def procs() -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    for svc in started:
        svc.stop()


def csat(specialist: str, score: int, at: dt.datetime) -> bytes:
    return orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "type": "survey.csat",
            "occurred_at": at.isoformat(),
            "specialist_id": specialist,
            "score": score,
        }
    )


async def test_raw_events_to_webhook(
    clean_db: object,
    database_url: str,
    bootstrap: str,
    created_topics: Topics,
    tmp_path: Path,
    procs: list[ServiceProcess],
) -> None:
    env = service_env(
        database_url,
        bootstrap,
        KPI_TOPIC_PREFIX=created_topics.prefix,
        KPI_NOTIFY_GROUP_WAIT_SECONDS="0",
        # The receiver listens on 127.0.0.1, which the egress policy refuses by default.
        KPI_NOTIFY_ALLOW_PRIVATE_TARGETS="true",
    )
    rec = Receiver().start()
    try:
        for name in ("ingest", "scoring", "notify"):
            svc = start_service(name, env, tmp_path)
            procs.append(svc)
        for svc in procs:
            wait_status(svc.url + "/readyz", 200, timeout=60)
        notify = procs[2]
        r = await asyncio.to_thread(
            httpx.post,
            notify.url + "/v1/channels",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            json={
                "name": "hook",
                "kind": "webhook",
                "config": {"url": rec.url + "/hook", "secret": "e2e-secret"},
            },
            timeout=10,
        )
        assert r.status_code == 201, r.text
        now = dt.datetime.now(dt.UTC)
        # 12 surveys, 3 satisfied: CSAT 25 % with enough samples -> unqualified -> alert.
        events = [csat("e2e-spec", 5 if i < 3 else 1, now) for i in range(12)]
        await produce(bootstrap, created_topics.surveys, events, key=lambda v: b"e2e-spec")
        await wait_for(lambda: len(rec.snapshot()) >= 1, 60)
        req = rec.snapshot()[0]
        assert verify_webhook_signature("e2e-secret", req.body, req.headers["X-KPI-Signature"])
        body = req.json()
        assert body["specialist_id"] == "e2e-spec" and body["status"] == "firing"
        assert body["kpi"] == "customer_satisfaction" and body["samples"] == 12
        assert body["value"] == pytest.approx(0.25)
    finally:
        rec.stop()
