"""Alert latency, produce -> webhook delivery, through ingest, scoring and notify, under load.

Starts an embedded PostgreSQL and broker plus the three services as real processes, a
local webhook receiver, then for DURATION seconds produces BACKGROUND events/s of healthy
surveys while every PROBE_EVERY seconds a fresh probe specialist gets 10 unsatisfied
surveys. Latency = first delivery of the probe's alert minus the time its surveys were
produced. Run: `.venv/bin/python bench/bench_alerts.py [--duration 30] [--rate 1000]`.
Grouping is off (KPI_NOTIFY_GROUP_WAIT_SECONDS=0): with grouping, follow-up alerts of one
team wait up to the group window by design.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kpi.stack import ServiceProcess
from migrations import upgrade
from shared.embedded import EmbeddedBroker, EmbeddedPostgres
from shared.kafka import create_producer, ensure_topics
from shared.topics import Topics
from tests.integration.notify_support import Receiver
from tests.service_helpers import ADMIN_TOKEN, service_env, start_service, wait_status


def survey(specialist: str, score: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": uuid.uuid4().hex,
            "type": "survey.csat",
            "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
            "specialist_id": specialist,
            "score": score,
        }
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(
    duration: float,
    rate: int,
    probe_every: float,
    *,
    database_url: str | None = None,
    bootstrap: str | None = None,
    on_services: Callable[[list[ServiceProcess]], None] | None = None,
) -> dict[str, Any]:
    """Measure and print; returns the figures. Uses the given servers or starts its own."""
    home = Path(tempfile.mkdtemp(prefix="kpi-bench-alerts-"))
    pg = None if database_url else EmbeddedPostgres(home / "pg")
    broker = None if bootstrap else EmbeddedBroker(log_path=home / "broker.log")
    if pg is not None:
        pg.start()
    if broker is not None:
        broker.start()
        bootstrap = broker.bootstrap
    assert bootstrap is not None
    procs: list[ServiceProcess] = []
    rec = Receiver().start()
    result: dict[str, Any] = {}
    try:
        url = database_url or (pg.create_database("bench") if pg is not None else "")
        await asyncio.to_thread(upgrade, url)
        topics = Topics(f"bench{uuid.uuid4().hex[:6]}.")
        await ensure_topics(bootstrap, 6, topics.all)
        env = service_env(
            url,
            bootstrap,
            KPI_TOPIC_PREFIX=topics.prefix,
            KPI_NOTIFY_GROUP_WAIT_SECONDS="0",
            KPI_SCORING_SESSION_TIMEOUT_MS="6000",
            KPI_INGEST_SESSION_TIMEOUT_MS="6000",
            KPI_NOTIFY_SESSION_TIMEOUT_MS="6000",
            KPI_LOG_LEVEL="WARNING",
            # The probe receiver listens on 127.0.0.1 (refused by the default egress policy).
            KPI_NOTIFY_ALLOW_PRIVATE_TARGETS="true",
        )
        for name in ("ingest", "scoring", "notify"):
            procs.append(start_service(name, env, home))
        for svc in procs:
            wait_status(svc.url + "/readyz", 200, timeout=60)
        if on_services is not None:
            on_services(procs)
        r = await asyncio.to_thread(
            httpx.post,
            procs[2].url + "/v1/channels",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            json={
                "name": "bench",
                "kind": "webhook",
                "config": {"url": rec.url + "/hook", "secret": "bench-secret"},
            },
        )
        r.raise_for_status()
        producer = create_producer(bootstrap, client_id="bench")
        await producer.start()
        sent_at: dict[str, float] = {}
        produced = 0
        try:
            # Warm-up: the first alert pays for group joins and connection set-up.
            await asyncio.sleep(3)
            start = time.monotonic()
            next_probe = start
            probe = 0
            tick = 0.05
            while time.monotonic() - start < duration:
                t = time.monotonic()
                for _ in range(int(rate * tick)):
                    sid = f"bg-{produced % 500}"
                    await producer.send(topics.surveys, survey(sid, 5), key=sid.encode())
                    produced += 1
                if t >= next_probe:
                    sid = f"probe-{probe}"
                    probe += 1
                    sent_at[sid] = time.time()
                    for _ in range(10):
                        await producer.send(topics.surveys, survey(sid, 1), key=sid.encode())
                    next_probe += probe_every
                await asyncio.sleep(max(0.0, tick - (time.monotonic() - t)))
            elapsed = time.monotonic() - start
            await producer.flush()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                got = {r.json()["specialist_id"] for r in rec.snapshot()}
                if set(sent_at) <= got:
                    break
                await asyncio.sleep(0.2)
        finally:
            await producer.stop()
        first: dict[str, float] = {}
        for req in rec.snapshot():
            body = req.json()
            first.setdefault(body["specialist_id"], req.at)
        lat = [first[s] - t for s, t in sent_at.items() if s in first]
        keys = [r.headers["X-KPI-Delivery"] for r in rec.snapshot()]
        print(f"background load: {produced} events in {elapsed:.1f}s = {produced / elapsed:.0f}/s")
        print(
            f"probes: {len(sent_at)} alerts expected, {len(lat)} delivered, "
            f"{len(sent_at) - len(lat)} missing, {len(keys) - len(set(keys))} duplicate keys"
        )
        result = {
            "background_events_per_s": produced / elapsed,
            "alerts_expected": len(sent_at),
            "alerts_delivered": len(lat),
            "duplicate_keys": len(keys) - len(set(keys)),
            "alert_latency_p50_s": statistics.median(lat) if lat else None,
            "alert_latency_p99_s": pct(lat, 0.99) if lat else None,
            "alert_latency_max_s": max(lat) if lat else None,
        }
        if lat:
            print(
                f"alert latency produce->delivery: p50 {statistics.median(lat) * 1000:.0f} ms, "
                f"p99 {pct(lat, 0.99) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms "
                f"(target p99 < 2000 ms)"
            )
    finally:
        for svc in procs:
            svc.stop()
        rec.stop()
        if broker is not None:
            broker.stop()
        if pg is not None:
            pg.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--probe-every", type=float, default=0.5)
    args = parser.parse_args()
    asyncio.run(run(args.duration, args.rate, args.probe_every))


if __name__ == "__main__":
    main()
