"""Stall watchdog: a consumer with lag that applies nothing for ``KPI_STALL_SECONDS`` is
reported, whatever the cause (metrics, ``/readyz``, a platform-health incident for admins).

The consumer loop feeds it (``observed`` after each fetch, ``applied`` after each committed
batch); a task of its own judges, so a loop stuck inside a handler (a statement that never
returns, a hung broker call) is caught as surely as one that keeps failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from shared import health, metrics

logger = logging.getLogger(__name__)

# Conditions nobody has re-confirmed for this many stall periods belong to a process that
# is gone: they are resolved as expired.
EXPIRE_AFTER_PERIODS = 3


def instance_name() -> str:
    """This process among the group's members: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class StallWatch:
    """Lag and progress of one consumer process; reports stalls and their end."""

    def __init__(
        self,
        service: str,
        group: str,
        reporter: health.HealthReporter,
        stall_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        instance: str | None = None,
    ) -> None:
        self.service = service
        self.group = group
        self.reporter = reporter
        self.stall_seconds = stall_seconds
        self._clock = clock
        self._wall = wall
        self.instance = instance or instance_name()
        self.key = f"stall:{group}:{self.instance}"
        self.lag: int | None = None
        self._oldest_ms: int | None = None
        self._progress_at = clock()
        self.last_error: str | None = None
        self.reported = False
        self._stopping = asyncio.Event()
        self._last_expiry = 0.0

    # -- fed by the consumer loop -------------------------------------------------------

    def observed(self, lag: int | None, oldest_timestamp_ms: int | None = None) -> None:
        """After a fetch: unapplied records in the assigned partitions (None: unknown)."""
        if lag == 0 or (lag and not self.lag):
            # Caught up is progress: the stall clock starts when work appears.
            self._progress_at = self._clock()
            self._oldest_ms = None
        self.lag = lag
        if lag and oldest_timestamp_ms is not None:
            self._oldest_ms = (
                oldest_timestamp_ms
                if self._oldest_ms is None
                else min(self._oldest_ms, oldest_timestamp_ms)
            )

    def applied(self, remaining_lag: int | None = None) -> None:
        """A batch was applied and committed."""
        self._progress_at = self._clock()
        self._oldest_ms = None
        self.last_error = None
        if remaining_lag is not None:
            self.lag = remaining_lag

    def failed(self, reason: str) -> None:
        self.last_error = reason

    # -- judged ---------------------------------------------------------------------------

    def idle_seconds(self) -> float:
        return self._clock() - self._progress_at

    def oldest_unapplied_seconds(self) -> float:
        if not self.lag:
            return 0.0
        if self._oldest_ms is not None:
            return max(0.0, self._wall() - self._oldest_ms / 1000)
        return self.idle_seconds()

    def stalled(self) -> bool:
        return bool(self.lag) and self.idle_seconds() > self.stall_seconds

    def problem(self) -> str | None:
        """For /readyz: why this consumer counts as stalled, None otherwise."""
        if not self.stalled():
            return None
        text = (
            f"stalled: {self.lag} records not applied, nothing applied for "
            f"{_age(self.idle_seconds())} (KPI_STALL_SECONDS={self.stall_seconds:g})"
        )
        if self.last_error:
            text += f"; last error: {self.last_error[:200]}"
        return text

    def summary(self) -> str:
        return (
            f"{self.service} consumer (group {self.group}, {self.instance}) has {self.lag} "
            f"records not applied and has applied nothing for {_age(self.idle_seconds())}"
        )

    def detail(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "instance": self.instance,
            "lag": self.lag,
            "idle_seconds": round(self.idle_seconds(), 1),
            "oldest_unapplied_seconds": round(self.oldest_unapplied_seconds(), 1),
            "stall_seconds": self.stall_seconds,
            "last_error": self.last_error,
        }

    async def evaluate(self) -> None:
        """Publish the metrics and open, confirm or resolve this process's stall incident."""
        metrics.CONSUMER_LAG.labels(self.service).set(self.lag or 0)
        metrics.CONSUMER_OLDEST_UNAPPLIED.labels(self.service).set(self.oldest_unapplied_seconds())
        stalled = self.stalled()
        metrics.CONSUMER_STALLED.labels(self.service).set(1 if stalled else 0)
        if stalled and not self.reported:
            logger.error("%s: %s", self.service, self.problem())
            await self.reporter.open(self.key, health.STALL, self.summary(), self.detail())
            self.reported = True
        elif stalled:
            await self.reporter.heartbeat(self.key)
        elif self.reported:
            logger.warning("%s: consumer applies records again; stall over", self.service)
            await self.reporter.resolve(self.key)
            self.reported = False
        else:
            await self.reporter.flush()
        now = self._clock()
        if now - self._last_expiry >= self.stall_seconds:
            self._last_expiry = now
            await self._expire_others()

    async def _expire_others(self) -> None:
        sessionmaker = self.reporter.sessionmaker
        if sessionmaker is None:
            return
        from shared.db import raw_connection, session_scope

        try:
            async with session_scope(sessionmaker) as session:
                conn = await raw_connection(session)
                gone = await health.expire_conditions(
                    conn, dt.timedelta(seconds=EXPIRE_AFTER_PERIODS * self.stall_seconds)
                )
        except Exception as exc:
            logger.debug("stall expiry skipped: %s", exc)
            return
        for incident in gone:
            logger.info("resolved stale stall report %s (its process is gone)", incident.key)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        period = max(0.5, min(5.0, self.stall_seconds / 4))
        while not self._stopping.is_set():
            try:
                await self.evaluate()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("%s: stall watchdog round failed", self.service)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), period)
        if self.reported:
            # The process is leaving: whoever takes its partitions reports for itself.
            with contextlib.suppress(Exception):
                await self.reporter.resolve(self.key)
            self.reported = False
