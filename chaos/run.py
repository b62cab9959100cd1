"""One chaos campaign: stack up, stream with faults, drain, check, report."""

from __future__ import annotations

import asyncio
import random
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx

from chaos import checks
from chaos.faults import Injector, plan
from chaos.generator import HistoryMaker, deliveries, malformed, poison, recent_anchors
from chaos.monitor import Monitor
from chaos.receiver import ChaosReceiver
from chaos.stack import ADMIN_TOKEN, PARTITIONS, TIMEZONE, ChaosStack
from chaos.stream import Streamer, http_bad, http_item, kafka_bad, kafka_item

WEBHOOK_SECRET = "chaos-webhook-secret-5d1e8f0a"
DB_PASSWORD = "chaos-db-password-9b7c3e21"
RESULTS = Path(__file__).parent / "results"


@dataclass
class Options:
    events: int = 40_000
    duration: float = 420.0
    short: bool = False
    seed: int = 1
    specialists: int = 40
    keep: bool = False
    only: tuple[str, ...] = ()
    home: Path | None = None
    say: Any = print


def build_inputs(opts: Options, prefix: str) -> dict[str, Any]:
    """The generated history, how it is delivered (Kafka/HTTP) and the malformed inputs."""
    rng = random.Random(opts.seed)
    tz = ZoneInfo(TIMEZONE)
    now = datetime.now(UTC)
    names = [f"{prefix}sp{i:03d}" for i in range(opts.specialists)]
    # A third clearly good, a third clearly poor, the rest near the lines: fire and resolve.
    quality = {n: (0.99, 0.6, rng.uniform(0.85, 0.97))[i % 3] for i, n in enumerate(names)}
    maker = HistoryMaker(
        rng,
        tz,
        prefix,
        specialists=names,
        anchors=recent_anchors(now, tz, 40),
        spread_minutes=600,
        latest=now,
        quality=quality,
    )
    tickets = max(10, opts.events // 8)
    sessions = max(2, opts.events // 2000)
    events = maker.history(tickets=tickets, sessions=sessions, loose=opts.events // 10)
    delivered = deliveries(rng, events, dup_rate=0.1)
    kafka: list[Any] = []
    http: list[Any] = []
    for e in delivered:
        roll = rng.random()
        if roll < 0.75:
            kafka.append(e)
        elif roll < 0.95:
            http.append(e)
        else:  # the same event by both ways
            kafka.append(e)
            http.append(e)
    n_bad = max(6, len(delivered) // 200)
    bad_k = malformed(rng, n_bad, prefix, http=False)
    bad_h = malformed(rng, max(3, n_bad // 3), prefix, http=True)
    return {
        "specialists": names,
        "events": events,
        "delivered": delivered,
        "kafka": kafka,
        "http": http,
        "bad_kafka": bad_k,
        "bad_http": bad_h,
        "rng": rng,
    }


async def campaign(opts: Options) -> dict[str, Any]:
    say = opts.say
    home = opts.home or Path(tempfile.mkdtemp(prefix="kpi-chaos-"))
    prefix = f"c{opts.seed}x{int(time.time()) % 100000}-"
    inputs = build_inputs(opts, prefix)
    rng: random.Random = inputs["rng"]
    stack = ChaosStack(home)
    receiver = ChaosReceiver().start()
    report: dict[str, Any] = {
        "mode": "short" if opts.short else "full",
        "seed": opts.seed,
        "started_at": datetime.now(UTC).isoformat(),
        # What notify runs with that is not a production default (its session timeout).
        "notify_overrides": {
            k: v for k, v in stack.overrides().items() if k.startswith("KPI_NOTIFY_")
        },
        "delivery_settle_s": stack.delivery_settle_seconds(),
    }
    t_setup = time.monotonic()
    monitor: Monitor | None = None
    try:
        await asyncio.to_thread(stack.start_servers)
        assert stack.postgres is not None
        # Trust auth ignores it, but it must never show up in a log, error or response.
        stack.database_url = stack.postgres.url.replace("postgres@", f"postgres:{DB_PASSWORD}@")
        stack.start_services()
        await asyncio.to_thread(stack.wait_ready)
        say(f"stack up in {time.monotonic() - t_setup:.1f}s: {stack.pids()}")
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.post(
                stack.services["notify-1"].url + "/v1/channels",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                json={
                    "name": "chaos",
                    "kind": "webhook",
                    "config": {"url": receiver.url + "/hook", "secret": WEBHOOK_SECRET},
                },
            )
            r.raise_for_status()
        monitor = Monitor(stack.bootstrap, stack.dsn, stack.topics, PARTITIONS)
        await monitor.start()

        kafka_items = [kafka_item(stack.topics, e) for e in inputs["kafka"]]
        kafka_items += [kafka_bad(stack.topics, b) for b in inputs["bad_kafka"]]
        http_items = [http_item(e) for e in inputs["http"]]
        http_items += [http_bad(b) for b in inputs["bad_http"]]
        rng.shuffle(kafka_items)
        rng.shuffle(http_items)
        markers = {b.marker for b in inputs["bad_kafka"] + inputs["bad_http"]}
        streamer = Streamer(
            stack.bootstrap,
            stack.services["ingest-1"].url,
            ADMIN_TOKEN,
            kafka_items,
            http_items,
            opts.duration,
            monitor.raw_ends,
            markers,
        )
        recovery_timeout = 60.0 if opts.short else 180.0
        the_plan = plan(rng, opts.duration, opts.short, opts.only)
        rounds = sum(1 for f in the_plan.faults if f.kind == "poison")
        injector = Injector(
            stack,
            receiver,
            monitor,
            recovery_timeout,
            say=say,
            streamer=streamer,
            poison=[poison(prefix, i) for i in range(rounds)],
        )
        say(
            f"streaming {len(inputs['delivered'])} deliveries of {len(inputs['events'])} events "
            f"({len(kafka_items)} Kafka messages, {len(http_items)} HTTP items, "
            f"{len(markers)} malformed) over {opts.duration:.0f}s, "
            f"{len(the_plan.faults)} faults"
        )
        t0 = time.monotonic()
        await asyncio.gather(streamer.run(), injector.run(the_plan, t0))
        stream_s = time.monotonic() - t0
        say(f"stream and faults done in {stream_s:.0f}s; draining")

        t_drain = time.monotonic()
        drain_timeout = 120.0 if opts.short else 300.0
        drained = await monitor.zero_lag(time.monotonic() + drain_timeout) is not None
        # Deliveries owed after the last fault may wait a full production backoff.
        settle_timeout = max(drain_timeout, stack.delivery_settle_seconds())
        settled = drained and await monitor.wait(monitor.notify_settled, settle_timeout)
        say(
            f"drained={drained} settled={settled} in {time.monotonic() - t_drain:.0f}s "
            f"(deliveries may take up to {settle_timeout:.0f}s)"
        )

        tz = ZoneInfo(TIMEZONE)
        today = checks.today_in(tz)
        conn = await asyncpg.connect(stack.dsn)
        try:
            chosen, ev = await checks.effective_events(conn, inputs["delivered"], prefix)
            want, kp = await checks.check_kpis(
                conn,
                chosen,
                tz,
                inputs["specialists"],
                today,
                stack.services["scoring-1"].url,
                ADMIN_TOKEN,
            )
            # Alerts converge after the last scores (group wait, retries): poll until
            # the check passes or the deadline, then keep the last answer.
            deadline = time.monotonic() + (60 if opts.short else 120)
            while True:
                al = await checks.check_alerts(
                    conn, receiver.delivered(), want, inputs["specialists"], today
                )
                if al["missed"] == 0 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(2)
        finally:
            await conn.close()
        await monitor.stop()
        sent = injector.poison_sent
        others = [
            v
            for k, v in zip(monitor.deadletter_keys, monitor.deadletters, strict=True)
            if (k or b"").decode(errors="replace") not in sent
        ]
        dl = checks.check_deadletters(others, markers, prefix)
        dl.update(checks.check_poison(sent, monitor.deadletter_keys, monitor.deadletters))
        monitor = None
        crossed_midnight = checks.today_in(tz) != today
        recoveries = [f.recovery_s for f in the_plan.faults if f.recovery_s is not None]
        kinds: dict[str, int] = {}
        for f in the_plan.faults:
            kinds[f"{f.kind}:{f.target}"] = kinds.get(f"{f.kind}:{f.target}", 0) + 1
        report.update(
            events_generated=len(inputs["events"]),
            deliveries_generated=len(inputs["delivered"]),
            kafka_messages_acked=streamer.stats.kafka_sent,
            kafka_resends=streamer.stats.kafka_resent,
            http_items_sent=streamer.stats.http_sent,
            http_retries=streamer.stats.http_retries,
            http_unexpected_rejections=len(streamer.stats.http_unexpected_rejections),
            stream_seconds=round(stream_s, 1),
            drained=drained,
            settled=settled,
            crossed_midnight=crossed_midnight,
            faults=[f.as_dict() for f in the_plan.faults],
            faults_by_kind=kinds,
            faults_failed=sum(1 for f in the_plan.faults if f.error),
            faults_not_recovered=sum(1 for f in the_plan.faults if f.recovery_s is None),
            faults_unnoticed=sum(1 for f in the_plan.faults if f.unnoticed),
            recovery_p50_s=round(statistics.median(recoveries), 1) if recoveries else None,
            recovery_max_s=round(max(recoveries), 1) if recoveries else None,
            **ev,
            **kp,
            **dl,
            alerts=al,
        )
        report.update(stack_restarts={k: s.restarts for k, s in stack.services.items()})
    finally:
        if monitor is not None:
            await monitor.stop()
        await asyncio.to_thread(stack.stop)
        receiver.stop()
    report.update(
        checks.check_secrets(stack.log_paths(), [ADMIN_TOKEN, WEBHOOK_SECRET, DB_PASSWORD])
    )
    report["logs"] = str(home / "logs")
    report["passed"] = passed(report)
    if not opts.keep and report["passed"]:
        shutil.rmtree(home, ignore_errors=True)
        report["logs"] = None
    return report


ZERO_FIGURES = (
    "lost",
    "unexpected_events",
    "duplicate_effects",
    "mismatches",
    "deadletter_missing",
    "deadletter_unexpected",
    "http_unexpected_rejections",
    "faults_failed",
    "faults_not_recovered",
    "faults_unnoticed",
    "poison_missing",
    "poison_duplicates",
    "poison_bad_records",
    "secrets_in_logs",
)
ZERO_ALERT_FIGURES = (
    "missed",
    "key_payload_conflicts",
    "duplicates_without_same_key",
    "deliveries_failed",
)


def passed(report: dict[str, Any]) -> bool:
    if not report.get("drained") or not report.get("settled"):
        return False
    if any(report.get(k, 1) != 0 for k in ZERO_FIGURES):
        return False
    alerts = report.get("alerts", {})
    return all(alerts.get(k, 1) == 0 for k in ZERO_ALERT_FIGURES)
