"""KPI query latency: 1000 specialists x 400 days of kpi_daily, real HTTP, 50 concurrent clients.

Usage: .venv/bin/python bench/bench_queries.py [--specialists 1000] [--days 400] [--clients 50]
       [--requests 5000] [--database-url postgresql://...]

Without --database-url an embedded PostgreSQL (and the embedded broker, for the service's
readiness) is started in a temporary directory and removed afterwards. The scoring service
runs as a real `python -m services.scoring` subprocess; the load generator is a minimal
keep-alive HTTP/1.1 client so that the figures measure the service, not the client library.
Prints p50/p90/p99/max latency and throughput per scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kpi.stack import ServiceProcess
from shared.catalogue import KPI_KEYS
from shared.embedded import EmbeddedBroker, EmbeddedPostgres, free_port

TOKEN = "kpi_bench_admin_token_0123456789abcdef"
TEAMS = 50


def plain_dsn(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


async def seed(dsn: str, specialists: int, days: int, today: dt.date) -> int:
    """Directory plus one kpi_daily row per (specialist, day, metric), inserted day-major.

    Day-major order is how the engine writes (each day touches every active specialist), so a
    specialist's rows are spread over the heap as in production rather than clustered.
    """
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE kpi_daily, kpi_facts, specialists, teams CASCADE")
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
        start = today - dt.timedelta(days=days - 1)
        # One statement per day keeps memory flat; unnest supplies the KPI keys.
        for offset in range(days):
            day = start + dt.timedelta(days=offset)
            await conn.execute(
                """
                INSERT INTO kpi_daily (specialist_id, day, metric, num, den)
                SELECT s.id, $1::date, m.metric,
                       CASE WHEN m.metric = 'avg_response_time_hours' THEN random() * 40 * r.den
                            WHEN m.metric = 'nps' THEN floor(random() * (2 * r.den + 1)) - r.den
                            ELSE floor(random() * (r.den + 1)) END,
                       r.den
                FROM specialists s
                CROSS JOIN unnest($2::text[]) AS m(metric)
                CROSS JOIN LATERAL (SELECT floor(random() * 6)::bigint AS den
                                    WHERE s.id IS NOT NULL) r
                """,
                day,
                list(KPI_KEYS),
            )
        await conn.execute("VACUUM ANALYZE kpi_daily")
        await conn.execute("ANALYZE specialists")
        count: int = await conn.fetchval("SELECT count(*) FROM kpi_daily")
        return count
    finally:
        await conn.close()


async def covering_index(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE INDEX IF NOT EXISTS bench_kpi_daily_cover ON kpi_daily "
            "(specialist_id, day, metric) INCLUDE (num, den)"
        )
        await conn.execute("VACUUM ANALYZE kpi_daily")
    finally:
        await conn.close()


async def wait_outbox_drained(dsn: str, timeout: float = 120) -> None:
    """The engine's start-up relay round republishes every recent specialist; let it finish."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM score_outbox)"):
                return
            await asyncio.sleep(0.5)
        print("warning: score_outbox not drained; figures include the relay's work")
    finally:
        await conn.close()


async def sql_only(dsn: str, specialists: int, today: dt.date, n: int) -> list[float]:
    """The route's statement alone, sequential on one connection (latency floor of the DB)."""
    conn = await asyncpg.connect(dsn)
    stmt = await conn.prepare(
        """
        SELECT s.id, s.name, s.team_id, k.metric, k.num, k.den
        FROM specialists s
        LEFT JOIN LATERAL (
            SELECT d.metric, sum(d.num) AS num, sum(d.den) AS den FROM kpi_daily d
            WHERE d.specialist_id = s.id AND d.day BETWEEN $2 AND $3 GROUP BY d.metric
        ) k ON true
        WHERE s.id = $1
        """
    )
    out = []
    try:
        for _ in range(n):
            sid = f"spec-{random.randrange(specialists):05d}"
            started = time.perf_counter()
            await stmt.fetch(sid, today - dt.timedelta(days=29), today)
            out.append(time.perf_counter() - started)
    finally:
        await conn.close()
    return out


class Conn:
    """One keep-alive HTTP/1.1 connection; just enough protocol for this benchmark."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def get(self, path: str) -> tuple[int, bytes]:
        self.writer.write(
            f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        body = await self.reader.readexactly(length)
        return status, body

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def load(
    port: int, clients: int, total: int, make_path: Callable[[], str]
) -> tuple[list[float], float]:
    """``clients`` closed-loop connections issuing ``total`` requests; latencies and wall time."""
    conns = [await Conn.open(port) for _ in range(clients)]
    latencies: list[float] = []
    remaining = total

    async def worker(conn: Conn) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            path = make_path()
            started = time.perf_counter()
            status, body = await conn.get(path)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"GET {path} -> {status}: {body[:300]!r}")

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for c in conns:
            await c.close()
    return latencies, time.perf_counter() - started


async def paced(
    port: int, clients: int, rate: float, seconds: float, make_path: Callable[[], str]
) -> tuple[list[float], float]:
    """``clients`` connections each sending on a fixed schedule (``rate`` req/s in total).

    Latency is measured from the scheduled send time, so a request delayed behind a slow one
    counts its wait too (no coordinated omission).
    """
    conns = [await Conn.open(port) for _ in range(clients)]
    latencies: list[float] = []
    interval = clients / rate
    t0 = time.perf_counter() + 0.05

    async def worker(index: int, conn: Conn) -> None:
        due = t0 + interval * index / clients  # stagger the clients evenly
        while due < t0 + seconds:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            path = make_path()
            status, body = await conn.get(path)
            latencies.append(time.perf_counter() - due)
            if status != 200:
                raise RuntimeError(f"GET {path} -> {status}: {body[:300]!r}")
            due += interval

    try:
        await asyncio.gather(*(worker(i, c) for i, c in enumerate(conns)))
    finally:
        for c in conns:
            await c.close()
    return latencies, time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def report(name: str, latencies: list[float], wall: float | None) -> None:
    rate = f"{len(latencies) / wall:7.0f} req/s" if wall else " " * 13
    print(
        f"{name:<44} n={len(latencies):5d} {rate}  p50 {pct(latencies, 0.50):6.2f} ms  "
        f"p90 {pct(latencies, 0.90):6.2f}  p99 {pct(latencies, 0.99):6.2f}  "
        f"max {max(latencies) * 1000:6.2f}  mean {statistics.fmean(latencies) * 1000:6.2f}"
    )


async def run_load(args: argparse.Namespace, port: int, today: dt.date) -> None:
    n = args.specialists

    def spec() -> str:
        return f"spec-{random.randrange(n):05d}"

    scenarios: list[tuple[str, int, int, Callable[[], str]]] = [
        (
            "specialist kpis 30d",
            args.clients,
            args.requests,
            lambda: f"/v1/specialists/{spec()}/kpis?window=30d",
        ),
        (
            "specialist kpis 400d",
            args.clients,
            args.requests // 2,
            lambda: f"/v1/specialists/{spec()}/kpis?window=400d",
        ),
        (
            "specialist kpis 30d (1 client, no queueing)",
            1,
            args.requests // 5,
            lambda: f"/v1/specialists/{spec()}/kpis?window=30d",
        ),
        (
            "team kpis 30d (20 members)",
            10,
            args.requests // 10,
            lambda: f"/v1/teams/team-{random.randrange(TEAMS)}/kpis?window=30d",
        ),
        (
            "history 90d",
            10,
            args.requests // 10,
            lambda: (
                f"/v1/specialists/{spec()}/kpis/nps/history?from="
                f"{today - dt.timedelta(days=89)}&to={today}"
            ),
        ),
        (
            f"leaderboard 30d over {n} specialists",
            4,
            100,
            lambda: "/v1/leaderboard?kpi=customer_satisfaction&window=30d",
        ),
    ]
    # Warm-up fills the connection pool, the token cache and PostgreSQL's buffers.
    await load(port, args.clients, min(1000, args.requests), scenarios[0][3])
    for rate in args.rates:
        latencies, wall = await paced(port, args.clients, rate, args.seconds, scenarios[0][3])
        report(
            f"HTTP specialist kpis 30d paced {rate:.0f}/s [{args.clients} clients]",
            latencies,
            wall,
        )
    for name, clients, total, make in scenarios:
        latencies, wall = await load(port, clients, total, make)
        report(f"HTTP {name} [{clients} closed-loop]", latencies, wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specialists", type=int, default=1000)
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument(
        "--rates",
        type=float,
        nargs="*",
        default=[250.0, 500.0],
        help="total req/s of the paced 50-client scenarios",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a paced run")
    parser.add_argument(
        "--covering-index",
        action="store_true",
        help="experiment: add (specialist_id, day, metric) INCLUDE (num, den) to kpi_daily",
    )
    parser.add_argument("--database-url", default=os.environ.get("KPI_BENCH_DATABASE_URL"))
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="kpi-bench-"))
    pg: EmbeddedPostgres | None = None
    broker = EmbeddedBroker(log_path=home / "broker.log")
    svc: ServiceProcess | None = None
    try:
        if args.database_url:
            url = args.database_url
        else:
            pg = EmbeddedPostgres(home / "pgdata")
            pg.start()
            url = pg.url
        from migrations import upgrade

        upgrade(url)
        broker.start()
        today = dt.datetime.now(dt.UTC).date()
        started = time.perf_counter()
        rows = asyncio.run(seed(plain_dsn(url), args.specialists, args.days, today))
        print(
            f"seeded {args.specialists} specialists x {args.days} days x {len(KPI_KEYS)} KPIs "
            f"= {rows:,} kpi_daily rows in {time.perf_counter() - started:.1f}s"
        )
        if args.covering_index:
            asyncio.run(covering_index(plain_dsn(url)))
        report(
            "SQL only: specialist 30d statement",
            asyncio.run(sql_only(plain_dsn(url), args.specialists, today, 2000)),
            None,
        )

        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}
        env.update(
            KPI_DATABASE_URL=url,
            KPI_KAFKA_BOOTSTRAP=broker.bootstrap,
            KPI_BOOTSTRAP_ADMIN_TOKEN=TOKEN,
            KPI_SCORING_PORT=str(port),
            KPI_LOG_LEVEL="WARNING",
            KPI_TOPIC_PREFIX="bench.",
        )
        svc = ServiceProcess("scoring", port, home / "scoring.log", env)
        svc.start()
        deadline = time.monotonic() + 30

        async def wait_up() -> None:
            while time.monotonic() < deadline:
                try:
                    conn = await Conn.open(port)
                    await conn.get("/healthz")
                    await conn.close()
                    return
                except OSError:
                    await asyncio.sleep(0.2)
            raise RuntimeError(f"scoring did not start: {svc.tail() if svc else ''}")

        asyncio.run(wait_up())
        time.sleep(2)  # the relay enqueues its start-up round shortly after start
        asyncio.run(wait_outbox_drained(plain_dsn(url)))
        load_before = os.getloadavg()[0]
        asyncio.run(run_load(args, port, today))
        print(
            f"target: specialist kpis p99 < 50 ms; {os.cpu_count()} CPUs, load average "
            f"{load_before:.1f} before / {os.getloadavg()[0]:.1f} after the HTTP runs "
            "(client, service and PostgreSQL share the machine)"
        )
    finally:
        if svc is not None:
            svc.stop()
        broker.stop()
        if pg is not None:
            pg.stop()
        import shutil

        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
