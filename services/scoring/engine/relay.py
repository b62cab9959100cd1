"""Score relay: publishes the alert-window KPIs of queued specialists to kpi.scores (outbox)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta, tzinfo

from aiokafka import AIOKafkaProducer
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scoring import queries, snapshots
from services.scoring.config import ScoringConfig
from services.scoring.db import raw_connection
from services.scoring.engine import outbox, repository
from services.scoring.kpi.grading import KpiValue
from services.scoring.kpi.windows import Window
from shared.catalogue import CATALOGUE
from shared.db import session_scope, utcnow
from shared.scores import ScoreKpi, ScoreSnapshot, ScoreWindow
from shared.settings import Settings

logger = logging.getLogger(__name__)

RELAY_BATCH = 2000
RELAY_PAUSE_FACTOR = 4

SCORES_PUBLISHED = Counter(
    "kpi_scoring_scores_published_total", "kpi.scores messages published", ["reason"]
)

Clock = Callable[[], datetime]


def next_local_midnight(now: datetime, tz: tzinfo) -> datetime:
    local = now.astimezone(tz)
    tomorrow = local.date() + timedelta(days=1)
    return datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=tz).astimezone(UTC)


def score_message(
    specialist_id: str,
    team_id: str | None,
    window: Window,
    tz_name: str,
    as_of: date,
    computed_at: datetime,
    reason: str,
    values: Mapping[str, KpiValue],
) -> bytes:
    """The kpi.scores value (shared.scores), each KPI with its direction from the catalogue."""
    # The values are the domain's own: built without validating them again, counts stay
    # the JSON integers they are (17, not 17.0).
    return ScoreSnapshot.model_construct(
        specialist_id=specialist_id,
        team_id=team_id,
        window=ScoreWindow.model_construct(
            name=window.name,
            from_=window.start.isoformat(),
            to=window.end.isoformat(),
            timezone=tz_name,
        ),
        as_of=as_of.isoformat(),
        computed_at=computed_at,
        reason=reason,
        kpis={
            key: ScoreKpi.model_construct(
                **v.to_dict(), higher_is_better=CATALOGUE[key].higher_is_better
            )
            for key, v in values.items()
        },
    ).to_json()


class ScoreRelay:
    """Publishes the alert-window KPIs of queued specialists to kpi.scores (outbox relay)."""

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        *,
        clock: Clock = utcnow,
        idle_seconds: float = 0.2,
        config: ScoringConfig | None = None,
    ) -> None:
        self.settings = settings
        self.config = config or ScoringConfig.from_settings(settings)
        self.sessionmaker = sessionmaker
        self.producer = producer
        self.clock = clock
        self.idle_seconds = idle_seconds
        self._stopping = asyncio.Event()
        self.published = 0
        self.healthy = True
        self.last_error: str | None = None

    def stop(self) -> None:
        self._stopping.set()

    async def sweep(self) -> int:
        """Queue every recently active specialist (reason "clock"): windows move at midnight."""
        today = self.config.measure.today(self.clock())
        since = today - timedelta(days=self.config.alert_window_days)
        async with session_scope(self.sessionmaker) as session:
            conn = await raw_connection(session)
            count = await outbox.enqueue_clock(conn, since)
        logger.info("scoring relay: clock sweep queued %d specialists", count)
        return count

    async def publish_once(self) -> int:
        """One relay round; returns how many specialists were published (0 = idle or busy)."""
        async with session_scope(self.sessionmaker) as session:
            conn = await raw_connection(session)
            # One active relay across processes; others idle instead of double-publishing.
            if not await repository.try_lock(conn, outbox.RELAY_LOCK_KEY):
                return 0
            pending = await outbox.pending_scores(conn, RELAY_BATCH)
            if not pending:
                return 0
            now = self.clock()
            as_of = self.config.measure.today(now)
            window = self.config.alert_window_at(as_of)
            ids = [p[0] for p in pending]
            values = await snapshots.window_kpis(session, ids, window, self.config.lines)
            teams = await queries.specialist_teams(conn, ids)
            futures = []
            for specialist_id, reason, _ in pending:
                value = score_message(
                    specialist_id,
                    teams.get(specialist_id),
                    window,
                    self.config.timezone,
                    as_of,
                    now,
                    reason,
                    values[specialist_id],
                )
                futures.append(
                    await self.producer.send(
                        self.settings.topics.scores, value, key=specialist_id.encode()
                    )
                )
            await asyncio.gather(*futures)
            # A crash before this commit republishes: harmless, notify is idempotent.
            await outbox.delete_published(conn, [(p[0], p[2]) for p in pending])
        for _, reason, _ in pending:
            SCORES_PUBLISHED.labels(reason).inc()
        self.published += len(pending)
        return len(pending)

    async def run(self) -> None:
        attempt = 0
        next_sweep: datetime | None = None
        while not self._stopping.is_set():
            try:
                now = self.clock()
                if next_sweep is None or now >= next_sweep:
                    await self.sweep()
                    next_sweep = next_local_midnight(now, self.config.measure.tz)
                started = time.perf_counter()
                busy = await self.publish_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                self.healthy, self.last_error = False, repr(exc)
                logger.exception("scoring relay: round failed, will retry")
                delay = min(10.0, 0.2 * 2 ** min(attempt, 10))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                continue
            attempt = 0
            self.healthy, self.last_error = True, None
            # After a busy round, wait four times as long as it took (at least
            # idle_seconds): under a bulk load every batch touches most specialists, and
            # republishing them back to back spent a third of the machine on the relay and
            # on notify. Waiting lets their changes coalesce into one message each, while a
            # light stream (alerts) still goes out within ~idle_seconds.
            pause = (
                max(self.idle_seconds, RELAY_PAUSE_FACTOR * (time.perf_counter() - started))
                if busy
                else self.idle_seconds
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)
