"""Per-ticket export: 1,000,000 stored ticket states, CSV and XLSX streamed over real HTTP.

Usage: .venv/bin/python bench/bench_ticket_export.py [--tickets 1000000] [--database-url ...]
       [--out bench/results/ticket_export.json]
       (KPI_BENCH_TICKETS sets the default count, e.g. 20000 for a quick run)

Ticket states are written straight into ticket_states with COPY (not through Kafka), spread
over the last 360 local dates, for 1,000 specialists in 50 teams. The scoring service runs as
a real `python -m services.scoring` subprocess; its RSS is sampled every 20 ms (psutil) while
each export streams, and the peak is reported beside its RSS before the export. Scenarios:
every ticket as CSV and as XLSX (admin, 360 days), one team's tickets over 30 days (CSV), and
one day of every team (CSV: the cost of scanning past the tickets the range leaves out).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import random
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kpi.stack import ServiceProcess
from shared.embedded import EmbeddedBroker, EmbeddedPostgres, free_port

TOKEN = "kpi_bench_admin_token_0123456789abcdef"
TEAMS = 50
SPECIALISTS = 1000
DAYS = 360
CHUNK_ROWS = 50_000


def plain_dsn(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


def _iso(t: dt.datetime) -> str:
    return t.isoformat()


def documents(n: int, today: dt.date, seed: int = 7) -> Iterator[tuple[str, str]]:
    """(ticket_id, v2 state document): created, mostly answered and closed, some reopened,
    followed up or rated, as the engine would store them."""
    rnd = random.Random(seed)
    start = dt.datetime.combine(today - dt.timedelta(days=DAYS - 1), dt.time(), dt.UTC)
    span = DAYS * 86400 - 3 * 86400
    for i in range(n):
        tid = f"tk-{i:08d}"
        who = f"spec-{rnd.randrange(SPECIALISTS):05d}"
        created = start + dt.timedelta(seconds=rnd.randrange(span))
        doc: dict[str, Any] = {"v": 2, "t": tid, "c": [[f"{tid}-c", _iso(created), who]]}
        if rnd.random() < 0.95:
            doc["f"] = [f"{tid}-f", _iso(created + dt.timedelta(minutes=rnd.randrange(2880))), who]
        if rnd.random() < 0.85:
            closed = created + dt.timedelta(minutes=rnd.randrange(60, 4320))
            doc["x"] = [[f"{tid}-x", _iso(closed), who, rnd.random() < 0.9]]
            if rnd.random() < 0.1:
                doc["o"] = [[f"{tid}-o", _iso(closed + dt.timedelta(hours=1))]]
            if rnd.random() < 0.6:
                doc["u"] = True
                doc["b"] = [f"{tid}-u"]
            if rnd.random() < 0.3:
                at = _iso(closed + dt.timedelta(hours=2))
                doc["s"] = [[f"{tid}-s", "csat", at, rnd.randrange(1, 6)]]
        yield tid, orjson.dumps(doc).decode()


async def seed(dsn: str, n: int, today: dt.date) -> float:
    """Directory and ``n`` ticket states (COPY, in chunks); returns the seconds it took."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE ticket_states, specialists, teams CASCADE")
        await conn.execute(
            "INSERT INTO teams (id, name, supervisor) "
            "SELECT 'team-' || t, 'Team ' || t, 'sup-' || t FROM generate_series(0, $1 - 1) t",
            TEAMS,
        )
        await conn.execute(
            "INSERT INTO specialists (id, name, team_id) "
            "SELECT 'spec-' || lpad(i::text, 5, '0'), '专员 ' || i, 'team-' || (i % $2) "
            "FROM generate_series(0, $1 - 1) i",
            SPECIALISTS,
            TEAMS,
        )
        docs = documents(n, today)
        while True:
            chunk = [r for _, r in zip(range(CHUNK_ROWS), docs, strict=False)]
            if not chunk:
                break
            await conn.copy_records_to_table(
                "ticket_states", records=chunk, columns=["ticket_id", "state"]
            )
        await conn.execute("VACUUM ANALYZE ticket_states")
    finally:
        await conn.close()
    return time.perf_counter() - started


class RssSampler:
    """Peak RSS (MB) of one process, sampled in a thread while a block runs."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        self.proc = psutil.Process(pid)
        self.every = every
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss / 2**20)
            except psutil.Error:
                return
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def export(port: int, pid: int, query: str) -> dict[str, float]:
    """One streamed export: seconds to the first byte and to the last, bytes, peak RSS."""
    before = psutil.Process(pid).memory_info().rss / 2**20
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept-Encoding": "identity"}
    size = 0
    first = None
    with RssSampler(pid) as rss, httpx.Client(timeout=1800) as client:
        started = time.perf_counter()
        with client.stream(
            "GET", f"http://127.0.0.1:{port}/v1/tickets?{query}", headers=headers
        ) as r:
            r.raise_for_status()
            for chunk in r.iter_raw():
                if first is None:
                    first = time.perf_counter() - started
                size += len(chunk)
        seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "first_byte_s": first or seconds,
        "mb": size / 2**20,
        "rss_before_mb": before,
        "peak_rss_mb": rss.peak,
    }


def scenarios(today: dt.date) -> dict[str, str]:
    every = f"from={today - dt.timedelta(days=DAYS - 1)}&to={today}"
    month = f"from={today - dt.timedelta(days=29)}&to={today}"
    day = today - dt.timedelta(days=DAYS // 2)
    return {
        "csv_all": f"format=csv&lang=en&{every}",
        "xlsx_all": f"format=xlsx&lang=en&{every}",
        "csv_team_30d": f"format=csv&team=team-7&{month}",
        "csv_one_day": f"format=csv&from={day}&to={day}",
    }


def run(url: str, bootstrap: str, tickets: int, log_dir: Path) -> dict[str, Any]:
    """Seed, start scoring, run every scenario; the figures keyed by scenario."""
    from tests.service_helpers import service_env, wait_status

    today = dt.datetime.now(dt.UTC).date()
    seeded = asyncio.run(seed(plain_dsn(url), tickets, today))
    print(f"seeded {tickets:,} ticket states by COPY in {seeded:.1f}s", flush=True)
    port = free_port()
    env = service_env(url, bootstrap, KPI_SCORING_PORT=str(port), KPI_LOG_LEVEL="WARNING",
                      KPI_TIMEZONE="UTC", KPI_TOPIC_PREFIX=f"bt{os.getpid()}.")  # fmt: skip
    env["KPI_BOOTSTRAP_ADMIN_TOKEN"] = TOKEN
    svc = ServiceProcess("scoring", port, log_dir / "tickets-scoring.log", env)
    svc.start()
    out: dict[str, Any] = {"tickets": tickets, "seed_s": seeded}
    try:
        wait_status(svc.url + "/healthz", 200, 60)
        assert svc.proc is not None
        pid = svc.proc.pid
        for name, query in scenarios(today).items():
            figures = export(port, pid, query)
            out[name] = figures
            rate = tickets / figures["seconds"] if name.endswith("_all") else 0
            print(
                f"{name}: {figures['seconds']:.1f}s (first byte {figures['first_byte_s']:.2f}s), "
                f"{figures['mb']:.0f} MB, scoring RSS {figures['rss_before_mb']:.0f} -> peak "
                f"{figures['peak_rss_mb']:.0f} MB" + (f", {rate:,.0f} tickets/s" if rate else ""),
                flush=True,
            )
    finally:
        svc.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tickets", type=int, default=int(os.environ.get("KPI_BENCH_TICKETS", "1000000"))
    )
    parser.add_argument("--database-url", default=os.environ.get("KPI_BENCH_DATABASE_URL"))
    parser.add_argument(
        "--out", type=Path, default=None, help="also write the figures (JSON) to this file"
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="kpi-bench-tickets-"))
    pg: EmbeddedPostgres | None = None
    broker = EmbeddedBroker(log_path=home / "broker.log")
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
        load = os.getloadavg()[0]
        got = run(url, broker.bootstrap, args.tickets, home)
        got["measured_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        got["machine"] = f"{platform.machine()} {os.cpu_count()} CPUs, load {load:.1f}"
        text = orjson.dumps(got, option=orjson.OPT_INDENT_2).decode()
        print(text)
        if args.out is not None:
            args.out.write_text(text + "\n")
    finally:
        broker.stop()
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
