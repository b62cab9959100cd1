"""`make bench-soak`: the cost of growth, per tenth of a long run (issue 18; not in CI).

Usage: .venv/bin/python bench/bench_soak.py [--events 20000000] [--specialists 2000]
       [--days 400] [--quick] [--query-rate 250] [--query-seconds 10] [--out bench/results]

A time-ordered stream (ticket lifecycles, surveys, audits, peer reviews, ~5 % duplicates) over
``--specialists`` specialists (in 50 teams) and ``--days`` days ending today is fed to the
real scoring service (a `python -m services.scoring` process: consumer, relay and REST API) as
fast as the producer and the service go, one tenth at a time. Per tenth it records:
- throughput: the tenth's messages / (first produced -> scoring's stored offsets cover them);
- RSS of the scoring process, and PSS (shared buffers counted once) of PostgreSQL's processes;
- database bytes per event (pg_database_size and pg_total_relation_size of the tables that
  grow), WAL bytes per event (pg_current_wal_lsn differences), service CPU µs per event;
- query latency at ``--query-rate`` req/s (paced, latency from the scheduled send time) over
  the four query kinds in turn: specialist 30d, team 30d, leaderboard 30d, nps history 90d,
  with ``as_of`` the stream's current day, measured between tenths (ingestion idle).
Targets (issue 18): last tenth's throughput >= 0.8 x first; RSS flat within 10 %; query p99
< 20 ms at the end. Writes bench/results/soak.json, soak.md and soak.png; ``--quick`` runs
200,000 messages and labels all three quick-scale. The embedded broker keeps every
message in RAM (~450 B each), so the full scale needs an external broker with retention:
set KPI_KAFKA_BOOTSTRAP (and KPI_DATABASE_URL for an external PostgreSQL) to use them.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_queries  # noqa: E402

from kpi.stack import ServiceProcess  # noqa: E402
from migrations import upgrade  # noqa: E402
from shared.embedded import EmbeddedBroker, EmbeddedPostgres, free_port  # noqa: E402
from shared.events import encode_event, partition_key, validate_event_obj  # noqa: E402
from shared.kafka import create_producer, ensure_topics  # noqa: E402
from shared.topics import Topics  # noqa: E402
from tests.service_helpers import service_env, wait_status  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TZ = "Asia/Shanghai"
TEAMS = bench_queries.TEAMS
# Tables whose size the report follows (the ones that grow with events, and the aggregates).
TABLES = ("processed_events", "kpi_facts", "ticket_states", "kpi_daily", "score_outbox")
KINDS = ("specialist", "team", "leaderboard", "history")


def events(n: int, specialists: int, days: int, end: dt.date, seed: int = 18) -> Iterator[bytes]:
    """``n`` messages (~5 % of them duplicates), ticket by ticket in creation order over ``days``.

    Yields key + b"\\0" + value (one object per message keeps the generator lean). The mix is
    bench_scoring.make_events' (the `make bench` workload) spread evenly over the days.
    """
    rng = random.Random(seed)
    start = dt.datetime.combine(end - dt.timedelta(days=days - 1), dt.time(1), dt.UTC)
    span = (days * 86400) - 4 * 86400  # leave room for a lifecycle's last events
    who_ids = [f"spec-{i:05d}" for i in range(specialists)]
    seq = 0
    produced = 0
    ticket = 0
    recent: list[bytes] = []
    # ~3.6 messages per ticket lifecycle with its duplicates: tickets spread over the span.
    tickets = max(1, int(n / 3.6))

    def ev(kind: str, at: dt.datetime, **fields: Any) -> bytes:
        nonlocal seq
        seq += 1
        obj = {"event_id": f"soak-{seq}", "type": kind, "occurred_at": at.isoformat(), **fields}
        event = validate_event_obj(obj)
        return partition_key(event) + b"\0" + encode_event(event)

    while produced < n:
        ticket += 1
        tid, who = f"soak-t{ticket}", rng.choice(who_ids)
        at = start + dt.timedelta(seconds=span * min(ticket, tickets) / tickets)
        out = [ev("ticket.created", at, ticket_id=tid, specialist_id=who)]
        if rng.random() < 0.1:
            who = rng.choice(who_ids)
            out.append(ev("ticket.assigned", at, ticket_id=tid, specialist_id=who))
        out.append(
            ev(
                "ticket.first_response",
                at + dt.timedelta(hours=rng.uniform(0.1, 30)),
                ticket_id=tid,
                specialist_id=who,
            )
        )
        closed = at + dt.timedelta(hours=rng.uniform(1, 72))
        resolved = rng.random() < 0.9
        out.append(ev("ticket.closed", closed, ticket_id=tid, specialist_id=who, resolved=resolved))
        if rng.random() < 0.6:
            out.append(ev("survey.csat", closed, ticket_id=tid, score=rng.randint(1, 5)))
        if rng.random() < 0.3:
            score = rng.randint(0, 10)
            out.append(ev("survey.nps", closed, ticket_id=tid, specialist_id=who, score=score))
        if rng.random() < 0.2:
            out.append(
                ev("record.audited", closed, specialist_id=who, ticket_id=tid, accurate=True)
            )
        for msg in out:
            if produced >= n:
                break
            produced += 1
            yield msg
            recent.append(msg)
            # A redelivery soon after the original (exact duplicate, same event id).
            if rng.random() < 0.05 and produced < n:
                produced += 1
                yield rng.choice(recent[-200:])
        if len(recent) > 1000:
            del recent[:-200]


def postgres_pss_mb(data_dir: Path | None) -> float | None:
    """PSS of the postmaster and its children (shared memory counted once), in MiB."""
    if data_dir is None:
        return None
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
        root = psutil.Process(pid)
        total = 0
        for proc in [root, *root.children(recursive=True)]:
            try:
                total += proc.memory_full_info().pss
            except psutil.Error:
                continue
        return total / 2**20
    except (OSError, ValueError, psutil.Error):
        return None


def cpu_seconds(pid: int | None, children: bool = False) -> float:
    if pid is None:
        return 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)] if children else [root]
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system
        return total
    except psutil.Error:
        return 0.0


async def seed_directory(dsn: str, specialists: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO teams (id, name, supervisor) "
            "SELECT 'team-' || t, 'Team ' || t, 'sup-' || t FROM generate_series(0, $1 - 1) t",
            TEAMS,
        )
        await conn.execute(
            "INSERT INTO specialists (id, name, team_id) "
            "SELECT 'spec-' || lpad(i::text, 5, '0'), 'Specialist ' || i, 'team-' || (i % $2) "
            "FROM generate_series(0, $1 - 1) i",
            specialists,
            TEAMS,
        )
    finally:
        await conn.close()


async def sizes(conn: asyncpg.Connection) -> dict[str, int]:
    out = {"database": int(await conn.fetchval("SELECT pg_database_size(current_database())"))}
    for table in TABLES:
        out[table] = int(await conn.fetchval("SELECT pg_total_relation_size($1)", table))
    out["wal_lsn"] = int(await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))
    return out


async def committed(conn: asyncpg.Connection, group: str) -> int:
    return int(
        await conn.fetchval(
            "SELECT coalesce(sum(greatest(next_offset, 0)), 0)::bigint FROM consumer_offsets "
            "WHERE group_id = $1",
            group,
        )
    )


def query_kinds(specialists: int, day: dt.date) -> list[tuple[str, Callable[[], str]]]:
    def spec() -> str:
        return f"spec-{random.randrange(specialists):05d}"

    window = f"window=30d&as_of={day}"
    return [
        ("specialist", lambda: f"/v1/specialists/{spec()}/kpis?{window}"),
        ("team", lambda: f"/v1/teams/team-{random.randrange(TEAMS)}/kpis?{window}"),
        ("leaderboard", lambda: f"/v1/leaderboard?kpi=customer_satisfaction&{window}"),
        (
            "history",
            lambda: (
                f"/v1/specialists/{spec()}/kpis/nps/history?from={day - dt.timedelta(days=89)}"
                f"&to={day}"
            ),
        ),
    ]


async def probe_queries(
    port: int, rate: float, seconds: float, specialists: int, day: dt.date
) -> dict[str, float]:
    """p99 (ms) per query kind and overall at ``rate`` req/s split evenly over the kinds."""
    kinds = query_kinds(specialists, day)
    out: dict[str, float] = {}
    everything: list[float] = []
    # Warm-up: the token cache and the connection pool, as bench_queries does; then each
    # kind's service time alone (one client, no queueing), which tells a slow query from a
    # queue behind one (the kinds share the service's event loop).
    for name, make in kinds:
        await bench_queries.load(port, 10, 50, make)
        alone, _ = await bench_queries.load(port, 1, 20, make)
        out[f"{name}_alone_p50_ms"] = bench_queries.pct(alone, 0.50)
    # The kinds run side by side, each a quarter of the rate, so the total is ``rate``.
    results = await asyncio.gather(
        *(bench_queries.paced(port, 10, rate / len(kinds), seconds, make) for _, make in kinds)
    )
    for (name, _), (latencies, _) in zip(kinds, results, strict=True):
        out[f"{name}_p99_ms"] = bench_queries.pct(latencies, 0.99)
        everything.extend(latencies)
    out["all_p50_ms"] = bench_queries.pct(everything, 0.50)
    out["all_p99_ms"] = bench_queries.pct(everything, 0.99)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="kpi-soak-"))
    url = os.environ.get("KPI_DATABASE_URL")
    bootstrap = os.environ.get("KPI_KAFKA_BOOTSTRAP")
    pg = broker = None
    pg_dir: Path | None = None
    if not url:
        pg = EmbeddedPostgres(home / "pg")
        pg.start()
        pg_dir = pg.data_dir
        url = pg.create_database(f"soak_{uuid.uuid4().hex[:6]}")
    if not bootstrap:
        broker = EmbeddedBroker(log_path=home / "broker.log")
        broker.start()
        bootstrap = broker.bootstrap
    dsn = bench_queries.plain_dsn(url)
    await asyncio.to_thread(upgrade, url)
    await seed_directory(dsn, args.specialists)
    topics = Topics(f"soak{uuid.uuid4().hex[:6]}.")
    await ensure_topics(bootstrap, 6, topics.all)
    port = free_port()
    env = service_env(
        url,
        bootstrap,
        KPI_SCORING_PORT=str(port),
        KPI_LOG_LEVEL="WARNING",
        KPI_TOPIC_PREFIX=topics.prefix,
        KPI_TIMEZONE=TZ,
        KPI_SCORING_SESSION_TIMEOUT_MS="6000",
    )
    env["KPI_BOOTSTRAP_ADMIN_TOKEN"] = bench_queries.TOKEN
    svc = ServiceProcess("scoring", port, home / "soak-scoring.log", env)
    svc.start()
    group = f"{topics.prefix}kpi-scoring"
    end = dt.datetime.now(dt.UTC).date()
    deciles: list[dict[str, Any]] = []
    conn = await asyncpg.connect(dsn)
    producer = create_producer(bootstrap, client_id="soak", acks=1, linger_ms=10)
    await producer.start()
    try:
        await asyncio.to_thread(wait_status, svc.url + "/healthz", 200, 120)
        assert svc.proc is not None
        scoring = psutil.Process(svc.proc.pid)
        stream = events(args.events, args.specialists, args.days, end)
        tenth = args.events / 10
        sent = 0
        day_of = args.days / args.events  # days per message, for the stream's current day
        before = initial = await sizes(conn)
        for d in range(10):
            target = round(tenth * (d + 1))
            cpu0 = cpu_seconds(scoring.pid)
            pg_cpu0 = cpu_seconds(_postmaster(pg_dir), children=True)
            started = time.perf_counter()
            count = 0
            futures = []
            # Messages of this tenth (duplicates ride along with their originals).
            for msg in stream:
                key, _, value = msg.partition(b"\0")
                futures.append(await producer.send(topics.events, value, key=key))
                count += 1
                if len(futures) >= 5000:
                    await asyncio.gather(*futures)
                    futures.clear()
                if count >= target - sent:
                    break
            await asyncio.gather(*futures)
            sent += count
            # Done when scoring's stored offsets cover the tenth and its relay has published
            # the scores it queued (the relay's work is part of the cost of an event).
            while await committed(conn, group) < sent or await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM score_outbox)"
            ):
                if svc.proc.poll() is not None:
                    raise RuntimeError(f"scoring exited; see {svc.log_path}")
                await asyncio.sleep(0.05)
            seconds = time.perf_counter() - started
            cpu = cpu_seconds(scoring.pid) - cpu0
            pg_cpu = cpu_seconds(_postmaster(pg_dir), children=True) - pg_cpu0
            now = await sizes(conn)
            day = end - dt.timedelta(days=int(args.days - 1 - min(args.days - 1, day_of * sent)))
            if args.query_rate > 0:
                queries = await probe_queries(
                    port, args.query_rate, args.query_seconds, args.specialists, day
                )
            else:  # --query-rate 0: ingestion only (e.g. to see memory without the API's)
                queries = {f"{k}_{m}": math.nan for k in KINDS for m in ("p99_ms", "alone_p50_ms")}
                queries.update(all_p50_ms=math.nan, all_p99_ms=math.nan)
            row = {
                "decile": d + 1,
                "messages": sent,
                "events_per_s": count / seconds,
                "seconds": seconds,
                "scoring_rss_mb": scoring.memory_info().rss / 2**20,
                "postgres_pss_mb": postgres_pss_mb(pg_dir),
                # Growth since the start (the empty schema's pages are not the events').
                "db_bytes_per_event": (now["database"] - initial["database"]) / sent,
                "table_bytes_per_event": {t: (now[t] - initial[t]) / sent for t in TABLES},
                "wal_bytes_per_event": (now["wal_lsn"] - before["wal_lsn"]) / count,
                "scoring_cpu_us_per_event": 1e6 * cpu / count,
                "postgres_cpu_us_per_event": 1e6 * pg_cpu / count if pg_dir else None,
                "as_of": day.isoformat(),
                "load": os.getloadavg()[0],
                **{f"query_{k}": v for k, v in queries.items()},
            }
            before = now
            deciles.append(row)
            print(
                f"[{d + 1}/10] {sent:,} messages: {row['events_per_s']:,.0f} events/s; scoring "
                f"RSS {row['scoring_rss_mb']:.0f} MB, PostgreSQL PSS "
                f"{row['postgres_pss_mb'] or 0:.0f} MB; {row['db_bytes_per_event']:.0f} DB "
                f"B/event, WAL {row['wal_bytes_per_event']:.0f} B/event; query p99 "
                f"{queries['all_p99_ms']:.1f} ms (as of {day}); load {row['load']:.1f}",
                flush=True,
            )
    finally:
        await producer.stop()
        await conn.close()
        svc.stop()
        if broker is not None:
            broker.stop()
        if pg is not None:
            pg.stop()
    first, last = deciles[0], deciles[-1]
    rss = [r["scoring_rss_mb"] for r in deciles]
    pss = [r["postgres_pss_mb"] for r in deciles if r["postgres_pss_mb"]]
    return {
        "scale": "quick" if args.quick else "full",
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
        "events": args.events,
        "specialists": args.specialists,
        "days": args.days,
        "query_rate_per_s": args.query_rate,
        "query_seconds": args.query_seconds,
        "deciles": deciles,
        "summary": {
            "throughput_last_over_first": last["events_per_s"] / first["events_per_s"],
            # After the first tenth (start-up, caches filling), max over min.
            "scoring_rss_growth": max(rss[1:]) / min(rss[1:]) - 1 if len(rss) > 1 else 0.0,
            "postgres_pss_growth": max(pss[1:]) / min(pss[1:]) - 1 if len(pss) > 1 else 0.0,
            "query_p99_ms_end": last["query_all_p99_ms"],
        },
    }


def _postmaster(data_dir: Path | None) -> int | None:
    if data_dir is None:
        return None
    try:
        return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError):
        return None


def markdown(r: dict[str, Any]) -> str:
    s = r["summary"]
    label = (
        "QUICK SCALE (not the issue's 20,000,000-event run): "
        if r["scale"] == "quick"
        else "Full scale: "
    )
    lines = [
        f"# Soak benchmark ({r['measured_at']}, {r['machine']})",
        "",
        f"{label}{r['events']:,} messages (~5 % duplicates) over {r['specialists']:,} "
        f"specialists and {r['days']} days; queries paced at {r['query_rate_per_s']:.0f} req/s "
        f"for {r['query_seconds']:.0f} s after each tenth (ingestion idle).",
        "",
        "| tenth | messages | events/s | scoring RSS MB | PostgreSQL PSS MB | DB B/event | "
        "processed_events | kpi_facts | ticket_states | kpi_daily | WAL B/event | "
        "scoring CPU µs/event | PostgreSQL CPU µs/event | p99 specialist | p99 team | "
        "p99 leaderboard | p99 history | p99 all (ms) | load |",
        "|" + "---|" * 19,
    ]
    for d in r["deciles"]:
        t = d["table_bytes_per_event"]
        lines.append(
            f"| {d['decile']} | {d['messages']:,} | {d['events_per_s']:,.0f} | "
            f"{d['scoring_rss_mb']:.0f} | {d['postgres_pss_mb'] or 0:.0f} | "
            f"{d['db_bytes_per_event']:.0f} | {t['processed_events']:.0f} | "
            f"{t['kpi_facts']:.0f} | {t['ticket_states']:.0f} | {t['kpi_daily']:.0f} | "
            f"{d['wal_bytes_per_event']:.0f} | {d['scoring_cpu_us_per_event']:.0f} | "
            f"{d['postgres_cpu_us_per_event'] or 0:.0f} | "
            f"{d['query_specialist_p99_ms']:.1f} | {d['query_team_p99_ms']:.1f} | "
            f"{d['query_leaderboard_p99_ms']:.1f} | {d['query_history_p99_ms']:.1f} | "
            f"{d['query_all_p99_ms']:.1f} | {d['load']:.1f} |"
        )
    lines += [
        "",
        "| tenth | alone p50 specialist (ms) | team | leaderboard | history |",
        "|---|---|---|---|---|",
        *(
            f"| {d['decile']} | {d['query_specialist_alone_p50_ms']:.1f} | "
            f"{d['query_team_alone_p50_ms']:.1f} | {d['query_leaderboard_alone_p50_ms']:.1f} | "
            f"{d['query_history_alone_p50_ms']:.1f} |"
            for d in r["deciles"]
        ),
        "",
        "Alone: one client, 20 requests, no other load on the service (its service time); the "
        "p99 columns above are at the paced rate, where the kinds queue behind each other.",
        "",
        "DB and table columns: growth since the start per message so far (pg_database_size, "
        "pg_total_relation_size: heap + indexes + TOAST). PostgreSQL PSS includes the shared "
        "buffers touched so far, which grow until shared_buffers (128 MB by default) is full.",
        "",
        "| target (issue 18) | measured | met |",
        "|---|---|---|",
        f"| last tenth throughput >= 0.8 x first | {s['throughput_last_over_first']:.2f} | "
        f"{_met(s['throughput_last_over_first'] >= 0.8)} |",
        f"| scoring RSS flat within 10 % (tenths 2-10) | {s['scoring_rss_growth']:+.1%} | "
        f"{_met(s['scoring_rss_growth'] <= 0.10)} |",
        f"| PostgreSQL PSS flat within 10 % (tenths 2-10) | {s['postgres_pss_growth']:+.1%} | "
        f"{_met(s['postgres_pss_growth'] <= 0.10)} |",
        f"| query p99 < 20 ms at the end | {s['query_p99_ms_end']:.1f} ms | "
        f"{_met(s['query_p99_ms_end'] < 20)} |",
    ]
    return "\n".join(lines) + "\n"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [d["decile"] * 10 for d in r["deciles"]]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    title = "QUICK SCALE " if r["scale"] == "quick" else ""
    fig.suptitle(
        f"{title}soak: {r['events']:,} events, {r['specialists']} specialists, {r['days']} days"
    )
    ax = axes[0][0]
    ax.plot(x, [d["events_per_s"] for d in r["deciles"]], marker="o")
    ax.set_title("throughput (events/s)")
    ax.set_ylim(bottom=0)
    ax = axes[0][1]
    ax.plot(x, [d["scoring_rss_mb"] for d in r["deciles"]], marker="o", label="scoring RSS")
    ax.plot(
        x, [d["postgres_pss_mb"] or 0 for d in r["deciles"]], marker="o", label="PostgreSQL PSS"
    )
    ax.set_title("memory (MiB)")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax = axes[1][0]
    ax.plot(x, [d["db_bytes_per_event"] for d in r["deciles"]], marker="o", label="database")
    for table in ("processed_events", "kpi_facts", "ticket_states", "kpi_daily"):
        ax.plot(x, [d["table_bytes_per_event"][table] for d in r["deciles"]], label=table)
    ax.set_title("bytes per event (cumulative)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="lower right")
    ax = axes[1][1]
    for kind in ("specialist", "team", "leaderboard", "history"):
        ax.plot(x, [d[f"query_{kind}_p99_ms"] for d in r["deciles"]], marker=".", label=kind)
    ax.axhline(20, color="red", linestyle="--", linewidth=0.8, label="target 20 ms")
    ax.set_title(f"query p99 (ms, log scale) at {r['query_rate_per_s']:.0f} req/s")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    for row in axes:
        for a in row:
            a.set_xlabel("% of the run")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--specialists", type=int, default=2000)
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--quick", action="store_true", help="200,000 events (quick scale)")
    parser.add_argument("--query-rate", type=float, default=250.0, help="0: no query probes")
    parser.add_argument("--query-seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for soak.*")
    args = parser.parse_args()
    if args.quick and args.events == parser.get_default("events"):
        args.events = 200_000
        if args.query_seconds == parser.get_default("query_seconds"):
            args.query_seconds = 4.0
    r = asyncio.run(run(args))
    stem = "soak"  # a quick run says so in every file (scale, headings, plot title)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(_round(r), indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(r))
    plot(r, args.out / f"{stem}.png")
    print()
    print(markdown(r))
    print(f"written to {args.out / stem}.json, .md and .png")


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 3)
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_round(x) for x in v]
    return v


if __name__ == "__main__":
    main()
