"""Run service processes for integration tests, exactly as `kpi up` runs them."""

from __future__ import annotations

import os
import random
import time
from collections import deque
from pathlib import Path

import httpx

from kpi.stack import ServiceProcess
from shared.embedded import port_is_free
from tests.kafka_helpers import SESSION_TIMEOUT_MS

ADMIN_TOKEN = "kpi_test_admin_token_0123456789"


# Ports of the servers the tests start. The kernel's free ports (bind to port 0) are random over
# the whole ephemeral range, so two xdist workers may be handed the same one before either
# binds it; the loser's test would then talk to the other worker's server. Each worker picks
# instead from a block of its own below the ephemeral range (32768+), which no outgoing
# connection takes either.
PORT_BASE, PORT_BLOCK = 10_000, 1_000
_recent: deque[int] = deque(maxlen=200)  # handed out lately: maybe not bound yet


def worker_port() -> int:
    """A free loopback port of this test process's block (the main process or xdist gwN)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) + 1 if worker.startswith("gw") else 0
    low = PORT_BASE + (index % 20) * PORT_BLOCK
    for _ in range(PORT_BLOCK * 4):
        port = random.randrange(low, low + PORT_BLOCK)
        if port not in _recent and port_is_free(port):
            _recent.append(port)
            return port
    raise RuntimeError(f"no free port in {low}..{low + PORT_BLOCK - 1}")


def service_env(database_url: str, bootstrap: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}
    env.update(
        KPI_DATABASE_URL=database_url,
        KPI_KAFKA_BOOTSTRAP=bootstrap,
        KPI_BOOTSTRAP_ADMIN_TOKEN=ADMIN_TOKEN,
        KPI_LOG_LEVEL="INFO",
        # Each service's first group join takes half of this (see SESSION_TIMEOUT_MS).
        KPI_INGEST_SESSION_TIMEOUT_MS=str(SESSION_TIMEOUT_MS),
        KPI_SCORING_SESSION_TIMEOUT_MS=str(SESSION_TIMEOUT_MS),
        KPI_NOTIFY_SESSION_TIMEOUT_MS=str(SESSION_TIMEOUT_MS),
        # A weekly digest scan 30 s after scoring starts would add a digest to every team
        # channel of any longer test; the tests about digests send them themselves.
        KPI_DIGEST_SCHEDULE="off",
    )
    env.update(extra)
    return env


def start_service(name: str, env: dict[str, str], log_dir: Path) -> ServiceProcess:
    port = worker_port()
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
