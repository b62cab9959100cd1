"""Dashboard page loads with 1,000 specialists, measured in headless Chromium (Playwright).

Usage: .venv/bin/python bench/bench_dashboard.py [--specialists 1000] [--days 120] [--runs 5]

Seeds the directory and kpi_daily like bench/bench_queries.py (50 teams), starts a real
`python -m services.scoring`, and measures, per page, the time from navigation start until
the page is fully rendered with its data (overview: every row and cell in the table; specialist
page: tiles and all eight trend charts), plus the API calls the pages make, over real HTTP.
Needs /usr/bin/chromium (`make chromium`). Prints medians and maxima; target: under 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_queries import TOKEN, plain_dsn, seed, wait_outbox_drained
from kpi.stack import ServiceProcess
from shared.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from tests.service_helpers import CHROMIUM_ARGS


def fmt(values: list[float]) -> str:
    return (
        f"median {statistics.median(values) * 1000:7.1f} ms  "
        f"max {max(values) * 1000:7.1f} ms  (n={len(values)})"
    )


def api_timings(base: str, runs: int, specialists: int) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    today = dt.datetime.now(dt.UTC).date()
    calls = [
        ("config", "/v1/dashboard/config"),
        ("teams", "/v1/teams"),
        ("specialists (directory)", "/v1/specialists"),
        (f"overview 30d ({specialists} specialists)", "/v1/dashboard/overview?window=30d"),
        (f"overview 90d ({specialists} specialists)", "/v1/dashboard/overview?window=90d"),
        (f"overview qtd ({specialists} specialists)", "/v1/dashboard/overview?window=qtd"),
        ("overview 30d, one team", "/v1/dashboard/overview?window=30d&team=team-7"),
        ("specialist kpis 30d", "/v1/specialists/spec-00042/kpis?window=30d"),
        (
            "history 30d (x8 per specialist page)",
            f"/v1/specialists/spec-00042/kpis/customer_satisfaction/history"
            f"?from={today - dt.timedelta(days=29)}&to={today}",
        ),
        (
            "events behind a value",
            "/v1/specialists/spec-00042/kpis/resolution_rate/events?limit=50",
        ),
        ("leaderboard 30d, 200 rows", "/v1/leaderboard?kpi=customer_satisfaction&limit=200"),
    ]
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for name, path in calls:
            times = []
            size = 0
            for _ in range(runs):
                started = time.perf_counter()
                r = client.get(path)
                times.append(time.perf_counter() - started)
                r.raise_for_status()
                size = len(r.content)
            print(f"  API {name:<44} {fmt(times)}  {size / 1024:7.1f} KiB")


def page_timings(base: str, runs: int, specialists: int) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        context.add_init_script(f"sessionStorage.setItem('kpi.token', '{TOKEN}')")
        page = context.new_page()
        page.goto(base + "/ui/")  # warm: module graph and fonts in the cache, as for a user
        page.wait_for_selector("#overview-table [data-sid]", timeout=60_000)
        scenarios = [
            (
                "overview 30d, all teams",
                "#/overview",
                f"#overview-table [data-sid] >> nth={specialists - 1}",
            ),
            (
                "overview 90d, all teams",
                "#/overview?window=90d",
                f"#overview-table [data-sid] >> nth={specialists - 1}",
            ),
            ("overview 30d, one team", "#/overview?team=team-7", "#overview-table [data-sid]"),
            ("specialist page", "#/specialist/spec-00042", "#sp-charts svg >> nth=7"),
            ("leaderboard", "#/leaderboard", "#lb-table tbody tr"),
        ]
        for name, route, ready in scenarios:
            times = []
            for _ in range(runs):
                page.goto("about:blank")
                started = time.perf_counter()
                page.goto(base + "/ui/" + route)
                page.wait_for_selector(ready, state="attached", timeout=60_000)
                times.append(time.perf_counter() - started)
            rows = page.locator("#overview-table [data-sid]").count()
            print(f"  PAGE {name:<36} {fmt(times)}  rows {rows}")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specialists", type=int, default=1000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not Path("/usr/bin/chromium").exists():
        raise SystemExit("needs /usr/bin/chromium: run `make chromium` first")
    home = Path(tempfile.mkdtemp(prefix="kpi-bench-dash-"))
    pg = EmbeddedPostgres(home / "pgdata")
    broker = EmbeddedBroker(log_path=home / "broker.log")
    svc: ServiceProcess | None = None
    try:
        pg.start()
        from migrations import upgrade

        upgrade(pg.url)
        broker.start()
        today = dt.datetime.now(dt.UTC).date()
        started = time.perf_counter()
        rows = asyncio.run(seed(plain_dsn(pg.url), args.specialists, args.days, today))
        print(
            f"seeded {args.specialists} specialists x {args.days} days: {rows:,} kpi_daily rows "
            f"in {time.perf_counter() - started:.1f}s"
        )
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}
        env.update(
            KPI_DATABASE_URL=pg.url,
            KPI_KAFKA_BOOTSTRAP=broker.bootstrap,
            KPI_BOOTSTRAP_ADMIN_TOKEN=TOKEN,
            KPI_SCORING_PORT=str(port),
            KPI_NOTIFY_URL=f"http://127.0.0.1:{free_port()}",  # nothing there: alerts banner
            KPI_LOG_LEVEL="WARNING",
            KPI_TOPIC_PREFIX="bench.",
        )
        svc = ServiceProcess("scoring", port, home / "scoring.log", env)
        svc.start()
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        time.sleep(2)
        asyncio.run(wait_outbox_drained(plain_dsn(pg.url)))
        print("API calls (one client, sequential, JSON over HTTP):")
        api_timings(base, args.runs, args.specialists)
        print("Page loads (navigation start -> fully rendered with data, headless Chromium):")
        page_timings(base, args.runs, args.specialists)
        print(f"target: pages < 1 s with {args.specialists} specialists; {os.cpu_count()} CPUs")
    finally:
        if svc is not None:
            svc.stop()
        broker.stop()
        pg.stop()
        import shutil

        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
