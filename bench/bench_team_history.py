"""The team history statement on a big team: EXPLAIN and timings on a real PostgreSQL.

Seeds 1,000 specialists in 5 teams (200 members each) x 400 days x every KPI key, day-major
like the engine writes (bench_queries.seed), then runs the statement behind
GET /v1/teams/{id}/kpis/{kpi}/history for one team over 400 and 30 days.

    .venv/bin/python -m bench.bench_team_history [--database-url URL] [--metric-index]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg

from bench import bench_queries
from services.scoring import queries
from shared.embedded import EmbeddedPostgres

SPECIALISTS = 1000
TEAMS = 5  # 200 members each
DAYS = 400


async def measure(dsn: str, today: dt.date) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        stmt = queries._TEAM_DAILY
        for days in (DAYS, 30):
            # The route reads 6 days more than it shows (the first point's rolling window).
            start = today - dt.timedelta(days=days - 1 + 6)
            args = ("team-0", "customer_satisfaction", start, today)
            plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {stmt}", *args)
            print(f"--- {days} days (+6 lookback), team of 200 ---")
            print("\n".join(r[0] for r in plan))
            prepared = await conn.prepare(stmt)
            times = []
            for _ in range(50):
                began = time.perf_counter()
                rows = await prepared.fetch(*args)
                times.append((time.perf_counter() - began) * 1000)
            times.sort()
            print(
                f"{len(rows)} rows; p50 {statistics.median(times):.1f} ms, "
                f"p90 {times[int(len(times) * 0.9)]:.1f} ms over {len(times)} runs"
            )
    finally:
        await conn.close()


async def metric_index(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE INDEX IF NOT EXISTS bench_kpi_daily_metric ON kpi_daily "
            "(specialist_id, metric, day) INCLUDE (num, den)"
        )
        await conn.execute("VACUUM ANALYZE kpi_daily")
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default=os.environ.get("KPI_BENCH_DATABASE_URL"))
    parser.add_argument(
        "--metric-index",
        action="store_true",
        help="then again with an index on (specialist_id, metric, day) INCLUDE (num, den)",
    )
    args = parser.parse_args()
    pg: EmbeddedPostgres | None = None
    try:
        if args.database_url:
            url = args.database_url
        else:
            pg = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="kpi-bench-")) / "pgdata")
            pg.start()
            url = pg.url
        from migrations import upgrade

        upgrade(url)
        today = dt.datetime.now(dt.UTC).date()
        bench_queries.TEAMS = TEAMS
        began = time.perf_counter()
        dsn = bench_queries.plain_dsn(url)
        rows = asyncio.run(bench_queries.seed(dsn, SPECIALISTS, DAYS, today))
        print(f"seeded {rows:,} kpi_daily rows in {time.perf_counter() - began:.0f}s")
        asyncio.run(measure(dsn, today))
        if args.metric_index:
            asyncio.run(metric_index(dsn))
            print("=== with kpi_daily (specialist_id, metric, day) INCLUDE (num, den) ===")
            asyncio.run(measure(dsn, today))
    finally:
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
