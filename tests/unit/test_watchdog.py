"""Stall watchdog (shared/watchdog.py) with a fake clock and an in-memory reporter."""

from __future__ import annotations

import asyncio
from typing import Any

from shared import health
from shared.watchdog import StallWatch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Reporter(health.HealthReporter):
    """Records what would be written."""

    def __init__(self) -> None:
        super().__init__("scoring", None)
        self.log: list[tuple[str, str]] = []

    async def open(self, key: str, kind: str, summary: str, detail: Any = None) -> None:
        self.log.append(("open", kind))

    async def resolve(self, key: str) -> None:
        self.log.append(("resolve", key.split(":")[0]))

    async def heartbeat(self, key: str) -> None:
        self.log.append(("heartbeat", key.split(":")[0]))


def make(stall: float = 120) -> tuple[StallWatch, Clock, Reporter]:
    clock, reporter = Clock(), Reporter()
    watch = StallWatch(
        "scoring", "kpi-scoring", reporter, stall, clock=clock, wall=clock, instance="h:1"
    )
    return watch, clock, reporter


def test_lag_without_progress_for_the_stall_period_is_a_stall() -> None:
    watch, clock, reporter = make()
    watch.observed(lag=500)
    clock.now += 119
    assert not watch.stalled() and watch.problem() is None
    clock.now += 2
    assert watch.stalled()
    problem = watch.problem()
    assert problem is not None and "500 records" in problem and "KPI_STALL_SECONDS=120" in problem
    asyncio.run(watch.evaluate())
    asyncio.run(watch.evaluate())
    assert reporter.log == [("open", health.STALL), ("heartbeat", "stall")]
    watch.applied(remaining_lag=0)
    assert not watch.stalled()
    asyncio.run(watch.evaluate())
    assert reporter.log[-1] == ("resolve", "stall")


def test_idle_is_not_stalled_and_a_busy_consumer_never_is() -> None:
    watch, clock, _ = make(stall=10)
    watch.observed(lag=0)
    clock.now += 1000
    assert not watch.stalled()  # nothing to do is not a stall
    watch.observed(lag=3)
    clock.now += 5
    assert not watch.stalled()  # the clock started when work appeared
    for _ in range(100):  # a long backlog applied batch after batch
        clock.now += 5
        watch.applied(remaining_lag=10_000)
        assert not watch.stalled()


def test_unknown_lag_is_never_a_stall() -> None:
    watch, clock, _ = make(stall=1)
    watch.observed(lag=None)
    clock.now += 100
    assert not watch.stalled()


def test_oldest_unapplied_age_uses_record_timestamps() -> None:
    watch, clock, _ = make()
    watch.observed(lag=10, oldest_timestamp_ms=int((clock.now - 30) * 1000))
    assert 29.9 < watch.oldest_unapplied_seconds() < 30.1
    watch.observed(lag=10, oldest_timestamp_ms=int((clock.now - 5) * 1000))
    assert watch.oldest_unapplied_seconds() > 29  # the oldest stays the oldest
    watch.applied(remaining_lag=0)
    assert watch.oldest_unapplied_seconds() == 0
