"""Fixtures of the browser tests: Debian's chromium and the real services a test starts."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from kpi.stack import ServiceProcess
from shared.topics import Topics
from tests.service_helpers import CHROMIUM_ARGS, service_env, start_service, wait_status

CHROMIUM = os.environ.get("KPI_CHROMIUM", "/usr/bin/chromium")
STATIC = Path(__file__).resolve().parents[2] / "services" / "scoring" / "dashboard" / "static"
STATIC_ORIGIN = "http://dashboard.test"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}

StartStack = Callable[..., Awaitable[dict[str, ServiceProcess]]]


@pytest.fixture
def chromium() -> str:
    """Path of the chromium executable; skip (fail on CI) when it is not installed."""
    if shutil.which(CHROMIUM) or Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} missing: `make test` installs the Debian chromium package")
    pytest.skip(f"{CHROMIUM} not installed (make chromium)")


@pytest.fixture
def static_page(chromium: str) -> Iterator[Any]:
    """A page on a made-up origin whose files are the dashboard's static files (no services):
    tests import the dashboard's modules in it as the page would."""
    from playwright.sync_api import Route, sync_playwright

    def serve(route: Route) -> None:
        path = route.request.url.removeprefix(STATIC_ORIGIN).split("?")[0]
        file = STATIC / path.lstrip("/")
        if path == "/" or not file.is_file():
            route.fulfill(status=200, content_type="text/html", body="<!doctype html><title>t")
        else:
            kind = STATIC_TYPES[file.suffix]
            route.fulfill(status=200, content_type=kind, body=file.read_bytes())

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page()
            tab.route(f"{STATIC_ORIGIN}/**", serve)
            tab.goto(STATIC_ORIGIN + "/")
            yield tab
        finally:
            browser.close()


@pytest.fixture
def shots(artifacts_dir: Path) -> Path:
    """Where screenshots go (test-artifacts/browser)."""
    path = artifacts_dir / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def procs() -> Iterator[dict[str, ServiceProcess]]:
    """Service processes by name; each is stopped when the test ends."""
    started: dict[str, ServiceProcess] = {}
    yield started
    for svc in started.values():
        svc.stop()


@pytest.fixture
def start_stack(
    database_url: str,
    bootstrap: str,
    created_topics: Topics,
    tmp_path: Path,
    procs: dict[str, ServiceProcess],
) -> StartStack:
    """`await start_stack(names, KPI_X=...)`: those services on this test's topics, ready.

    Scoring proxies the dashboard's alert calls to the notify started here.
    """

    async def start(names: Sequence[str], **extra: str) -> dict[str, ServiceProcess]:
        env = service_env(
            database_url,
            bootstrap,
            KPI_TOPIC_PREFIX=created_topics.prefix,
            KPI_NOTIFY_GROUP_WAIT_SECONDS="0",
            # Receivers listen on 127.0.0.1, which the egress policy refuses by default.
            KPI_NOTIFY_ALLOW_PRIVATE_TARGETS="true",
            **extra,
        )
        for name in names:
            if name != "scoring":
                procs[name] = start_service(name, env, tmp_path)
        if "scoring" in names:
            env["KPI_NOTIFY_URL"] = procs["notify"].url
            if "ingest" in procs:
                env["KPI_INGEST_URL"] = procs["ingest"].url
            procs["scoring"] = start_service("scoring", env, tmp_path)
        for svc in procs.values():
            await asyncio.to_thread(wait_status, svc.url + "/readyz", 200, 60)
        return procs

    return start
