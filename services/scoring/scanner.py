"""Periodic scans of the scoring service (appraisal reminders, team digests): one loop."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Final, Generic, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scoring.config import ScoringConfig

logger = logging.getLogger(__name__)

# The first scan waits this long after start (at most one interval): start-up goes first.
FIRST_SCAN_DELAY: Final = 30.0

R = TypeVar("R")  # what decides a scan: the reminder policy, the digest schedule


class PeriodicScan(ABC, Generic[R]):
    """Scans shortly after start, then every ``interval`` seconds, until stopped.

    A subclass says what one scan does under ``rule`` (:meth:`scan_once`) and names itself
    in ``what`` for the logs.
    """

    what = "scan"

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        config: ScoringConfig,
        rule: R,
        *,
        clock: Callable[[], dt.datetime],
        interval: float,
        first_delay: float = FIRST_SCAN_DELAY,
    ) -> None:
        self._sm = sessionmaker
        self._tz = ZoneInfo(config.timezone)
        self._lines = config.lines
        self.rule = rule
        self._clock = clock
        self.interval = interval
        self.first_delay = min(first_delay, interval)
        self._stopping = asyncio.Event()
        self.recorded = 0

    def stop(self) -> None:
        self._stopping.set()

    @abstractmethod
    async def scan_once(self) -> int | None:
        """One scan in one transaction; how many it recorded (None: another process scans)."""

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def run(self) -> None:
        await self._pause(self.first_delay)
        while not self._stopping.is_set():
            try:
                await self.scan_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The next round records whatever is still due: nothing is lost by waiting.
                logger.exception("%s: scan failed; next one in %.0fs", self.what, self.interval)
            await self._pause(self.interval)
