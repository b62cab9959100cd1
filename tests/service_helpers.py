"""Run service processes for integration tests, exactly as `kpi up` runs them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from kpi.stack import ServiceProcess
from shared.embedded import free_port

ADMIN_TOKEN = "kpi_test_admin_token_0123456789"


def service_env(database_url: str, bootstrap: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}
    env.update(
        KPI_DATABASE_URL=database_url,
        KPI_KAFKA_BOOTSTRAP=bootstrap,
        KPI_BOOTSTRAP_ADMIN_TOKEN=ADMIN_TOKEN,
        KPI_LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


def start_service(name: str, env: dict[str, str], log_dir: Path) -> ServiceProcess:
    port = free_port()
    env = {**env, f"KPI_{name.upper()}_PORT": str(port)}
    svc = ServiceProcess(name, port, log_dir / f"{name}-{port}.log", env)
    svc.start()
    return svc


def wait_status(url: str, expected: int, timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: httpx.Response | None = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=5)
            if last.status_code == expected:
                return last
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    got = f"{last.status_code} {last.text[:300]}" if last is not None else "no answer"
    raise AssertionError(f"{url} did not return {expected} within {timeout:.0f}s (last: {got})")


# Headless Chromium for the dashboard (tests/browser and bench/bench_dashboard.py).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
