"""Fixtures shared by the notify process tests: environment, process starter, snapshots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from kpi.stack import ServiceProcess
from shared.topics import Topics
from tests.integration.notify_support import ProduceSnaps, Start
from tests.kafka_helpers import produce
from tests.service_helpers import service_env, start_service, wait_status


@pytest.fixture
def notify_env(database_url: str, bootstrap: str, created_topics: Topics) -> dict[str, str]:
    """Environment of a notify process on this test's topics, tuned to react within seconds."""
    return service_env(
        database_url,
        bootstrap,
        KPI_TOPIC_PREFIX=created_topics.prefix,
        KPI_NOTIFY_GROUP_WAIT_SECONDS="0",
        KPI_NOTIFY_TICK_SECONDS="1",
        KPI_NOTIFY_LANG="en",
        # The test receivers listen on 127.0.0.1, which the egress policy refuses by default.
        KPI_NOTIFY_ALLOW_PRIVATE_TARGETS="true",
    )


def _starter(service: str, tmp_path: Path) -> Iterator[Start]:
    started: list[ServiceProcess] = []

    def run(env: dict[str, str]) -> ServiceProcess:
        svc = start_service(service, env, tmp_path)
        started.append(svc)
        wait_status(svc.url + "/readyz", 200, timeout=40)
        return svc

    yield run
    for svc in started:
        if svc.proc is not None:
            svc.stop()


@pytest.fixture
def start_notify(tmp_path: Path) -> Iterator[Start]:
    """Start a notify process with the given environment and wait until it is ready."""
    yield from _starter("notify", tmp_path)


@pytest.fixture
def start_scoring(tmp_path: Path) -> Iterator[Start]:
    """Start a scoring process (its dashboard proxy reaches notify at KPI_NOTIFY_URL)."""
    yield from _starter("scoring", tmp_path)


@pytest.fixture
def produce_snaps(bootstrap: str, created_topics: Topics) -> ProduceSnaps:
    """Send kpi.scores snapshots keyed by specialist, like the scoring relay does."""

    async def send(snaps: list[dict[str, Any]]) -> None:
        await produce(
            bootstrap,
            created_topics.scores,
            [orjson.dumps(s) for s in snaps],
            key=lambda v: orjson.loads(v)["specialist_id"].encode(),
        )

    return send
