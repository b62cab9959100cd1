"""Scoring Kafka adapter: kpi.events batches into the engine, DB-stored offsets, score relay."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Histogram
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scoring import repository, snapshots
from services.scoring.config import ScoringConfig
from services.scoring.handlers import BatchResult, Incoming, process_batch
from services.scoring.kpi.contributions import HoursFn
from services.scoring.kpi.grading import KpiValue
from services.scoring.kpi.windows import Window
from shared import health
from shared.catalogue import CATALOGUE
from shared.db import session_scope, utcnow
from shared.deadletter import Source, deadletter_value
from shared.events import InvalidEvent, decode_event
from shared.health import HealthReporter
from shared.kafka import (
    LoggingRebalanceListener,
    Quarantine,
    Record,
    create_consumer,
    create_producer,
    unapplied_lag,
)
from shared.logwatch import AnchorCheck, LogReset, LogWatch
from shared.offsets import Changed, fingerprint
from shared.poison import isolate
from shared.runtime import Runtime, tune_gc_for_batches
from shared.scores import ScoreKpi, ScoreSnapshot, ScoreWindow
from shared.settings import Settings
from shared.topics import EVENTS
from shared.watchdog import StallWatch

logger = logging.getLogger(__name__)

GROUP_ID = "kpi-scoring"
RELAY_BATCH = 2000
RELAY_PAUSE_FACTOR = 4
# Any constant works; it only has to be the same in every scoring process.
RELAY_LOCK_KEY = 0x6B70695F73636F72
RETENTION_LOCK_KEY = 0x6B70695F64656475
RETENTION_INTERVAL_SECONDS = 3600.0
RETENTION_CHUNK = 10_000

EVENTS_TOTAL = Counter(
    "kpi_scoring_events_total",
    "kpi.events records by outcome (applied, duplicate, stale, invalid)",
    ["outcome"],
)
CONFLICTS = Counter(
    "kpi_scoring_event_conflicts_total",
    "Known event ids seen again with a different payload (first version kept)",
)
DATA_QUALITY = Counter(
    "kpi_scoring_data_quality_issues_total", "Data-quality issues detected", ["issue"]
)
OFFSET_GAPS = Counter(
    "kpi_scoring_offset_gaps_total",
    "Partitions whose stored offset was no longer in the log (continued from the log start)",
)
BATCH_SECONDS = Histogram(
    "kpi_scoring_batch_seconds",
    "Decode + transaction time of one scoring batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DEDUP_PURGED = Counter(
    "kpi_scoring_dedup_purged_total",
    "Applied event ids forgotten after KPI_DEDUP_RETENTION_DAYS (replay horizon)",
)
SCORES_PUBLISHED = Counter(
    "kpi_scoring_scores_published_total", "kpi.scores messages published", ["reason"]
)

Clock = Callable[[], datetime]
Partition = tuple[str, int]


def _count(result: BatchResult) -> None:
    # Only called after the commit, so a rolled-back batch never inflates the counters.
    EVENTS_TOTAL.labels("applied").inc(result.applied)
    EVENTS_TOTAL.labels("duplicate").inc(result.duplicates)
    EVENTS_TOTAL.labels("stale").inc(result.stale)
    EVENTS_TOTAL.labels("invalid").inc(result.invalid)
    CONFLICTS.inc(result.conflicts)
    for issue, n in result.issues_by_kind.items():
        DATA_QUALITY.labels(issue).inc(n)


def _split_by_partition(records: list[Record], groups: int) -> list[list[Record]]:
    """Whole partitions into at most ``groups`` lists of similar size (largest first)."""
    by_tp: dict[Partition, list[Record]] = {}
    for rec in records:
        by_tp.setdefault((rec.topic, rec.partition), []).append(rec)
    out: list[list[Record]] = [[] for _ in range(min(groups, len(by_tp)))]
    for tp in sorted(by_tp, key=lambda k: (-len(by_tp[k]), k)):
        min(out, key=len).extend(by_tp[tp])
    return [g for g in out if g]


def _merge(results: list[BatchResult]) -> BatchResult:
    if len(results) == 1:
        return results[0]
    out = BatchResult()
    specialists: set[str] = set()
    for r in results:
        out.received += r.received
        out.stale += r.stale
        out.invalid += r.invalid
        out.duplicates += r.duplicates
        out.conflicts += r.conflicts
        out.applied += r.applied
        out.new_issues += r.new_issues
        for issue, n in r.issues_by_kind.items():
            out.issues_by_kind[issue] = out.issues_by_kind.get(issue, 0) + n
        specialists.update(r.specialists)
        out.new_specialists.extend(r.new_specialists)
        out.gaps.update(r.gaps)
    out.specialists = sorted(specialists)
    return out


class _SeekToStored(LoggingRebalanceListener):
    """On assignment, continue from the offsets committed with the effects in PostgreSQL."""

    def __init__(self, engine: ScoringConsumer) -> None:
        super().__init__("scoring")
        self._engine = engine

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await super().on_partitions_revoked(revoked)
        self._engine.revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await super().on_partitions_assigned(assigned)
        await self._engine.seek_to_stored(assigned)


class ScoringConsumer:
    """Consume kpi.events in batches; one PostgreSQL transaction per batch (offsets inside).

    The offsets stored in PostgreSQL know which log they belong to: with each offset the
    identity of the record just below it is stored, and after every assignment that record
    is read back and compared. A log that was replaced or is shorter than the stored offset
    (memory broker restarted, topic re-created, cluster rebuilt) is reported loudly and
    re-read from its start; event-id dedup keeps re-read records from counting twice.
    """

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        group_id: str = GROUP_ID,
        max_records: int = 4000,
        consumer_options: Mapping[str, Any] | None = None,
        on_batch: Callable[[BatchResult, float], None] | None = None,
        parallel: int = 2,
        config: ScoringConfig | None = None,
    ) -> None:
        if parallel < 1:
            raise ValueError(f"parallel must be >= 1, got {parallel}")
        self.parallel = parallel
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.group_id = group_id
        self.max_records = max_records
        measure = (config or ScoringConfig.from_settings(settings)).measure
        self.tz: tzinfo = measure.tz
        self.hours_fn: HoursFn | None = measure.hours_fn
        self.topic = settings.topics.events
        self._options = dict(consumer_options or {})
        self._on_batch = on_batch
        self._stopping = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.healthy = True
        self.last_error: str | None = None
        self.batches = 0
        self._accept_gap: set[Partition] = set()
        # Specialists known to exist in the directory (inserted or found by a committed
        # batch): re-inserting ~1000 of them per batch was pure waste. Nothing deletes
        # specialists, so a known id stays known for the life of the process.
        self._known_specialists: set[str] = set()
        self.reporter = HealthReporter("scoring", sessionmaker)
        self.logs = LogWatch()
        self.anchors = AnchorCheck(settings.bootstrap_servers, client_id="kpi-scoring-anchor")
        self.watch = StallWatch("scoring", group_id, self.reporter, settings.stall_seconds)
        self.quarantine: Quarantine | None = None
        # Partitions whose log changed and that wait (paused) for their stored offset to
        # be rewound; partitions assigned while their stored offset could not be read.
        self._resets: dict[TopicPartition, Changed] = {}
        self._unpositioned: set[TopicPartition] = set()
        self.log_resets = 0

    async def start(self) -> None:
        tune_gc_for_batches()
        bootstrap = self.settings.bootstrap_servers
        self.producer = create_producer(bootstrap, client_id="kpi-scoring-dlq")
        await self.producer.start()
        self.quarantine = Quarantine(
            self.producer, self.settings.topics, service="scoring", reporter=self.reporter
        )
        # Positions come from PostgreSQL (the listener seeks). When Kafka refuses one
        # (OffsetOutOfRange) the client restarts at the log start: records then arrive
        # below the position we expect, which LogCheck reports as a log change, and a
        # log start above the stored offset is the retention gap of _after_gaps.
        self.consumer = create_consumer(
            bootstrap, group_id=self.group_id, client_id="kpi-scoring", **self._options
        )
        self.consumer.subscribe([self.topic], listener=_SeekToStored(self))
        await self.consumer.start()

    def stop(self) -> None:
        self._stopping.set()
        self.watch.stop()

    async def close(self) -> None:
        await self.anchors.close()
        if self.consumer is not None:
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()

    def revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            self.logs.check.forget((tp.topic, tp.partition))
            self.anchors.forget(tp)
            self._resets.pop(tp, None)
            self._unpositioned.discard(tp)

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        assert self.consumer is not None
        self.consumer.seek(tp, offset)
        self.logs.check.seeked((tp.topic, tp.partition), offset)

    async def seek_to_stored(self, assigned: list[TopicPartition]) -> None:
        """Position each partition at its stored offset, verifying the record below it.

        A partition never applied starts at its log start (nothing of it is counted yet).
        """
        if not assigned or self.consumer is None:
            return
        try:
            async with self.sessionmaker() as session:
                conn = await repository.raw_connection(session)
                stored = await repository.read_offsets(
                    conn, self.group_id, [(tp.topic, tp.partition) for tp in assigned]
                )
        except Exception as exc:
            # Retried by the loop; until then nothing of these partitions is fetched.
            logger.warning("scoring: cannot read stored offsets yet (%s); will retry", exc)
            self.consumer.pause(*assigned)
            self._unpositioned.update(assigned)
            return
        fresh: list[TopicPartition] = []
        verified = 0
        for tp in assigned:
            got = stored.get((tp.topic, tp.partition))
            if got is None:
                fresh.append(tp)
                continue
            offset, fp = got
            if fp is not None and offset > 0:
                self.consumer.seek(tp, self.logs.check.verify((tp.topic, tp.partition), offset, fp))
                verified += 1
            else:
                # Stored by an older release (no fingerprint): only the position check.
                self._seek(tp, offset)
        if fresh:
            starts = await self.consumer.beginning_offsets(fresh)
            for tp in fresh:
                self._seek(tp, starts.get(tp, 0))
        self.consumer.resume(*assigned)
        self._unpositioned.difference_update(assigned)
        logger.info(
            "scoring: %d partitions continue from stored offsets (%d checked against the "
            "record last applied), %d never applied start at their log start",
            len(stored),
            verified,
            len(fresh),
        )

    async def run(self) -> None:
        assert self.consumer is not None
        attempt = 0
        while not self._stopping.is_set():
            try:
                await self._settle_positions()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                logger.exception("scoring: cannot position or rewind partitions yet")
                await self._backoff(attempt, f"positioning failed: {exc!r}")
                continue
            try:
                fetched = await self.consumer.getmany(timeout_ms=500, max_records=self.max_records)
            except KafkaError as exc:
                attempt += 1
                await self._backoff(attempt, f"fetch failed: {exc!r}")
                continue
            self.watch.observed(*unapplied_lag(self.consumer, self.logs.check, fetched))
            changed = await self.logs.scan(self.consumer, fetched)
            changed.update(await self.anchors.check(self.consumer.assignment()))
            for tp, verdict in changed.items():
                self.consumer.pause(tp)
                fetched.pop(tp, None)
                self._resets[tp] = verdict
            records = [r for recs in fetched.values() for r in recs]
            if not records:
                continue
            try:
                await isolate(records, self.handle, self._poison)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                logger.exception("scoring: batch of %d failed, will retry", len(records))
                for tp, recs in fetched.items():
                    if tp in self.consumer.assignment():
                        self._seek(tp, recs[0].offset)
                self.watch.failed(f"{type(exc).__name__}: {exc}")
                await self._backoff(attempt, f"batch failed: {exc!r}")
                continue
            attempt = 0
            self.healthy, self.last_error = True, None
            self.watch.applied()
            self.anchors.applied(records)

    async def _settle_positions(self) -> None:
        """Finish what a rebalance or a log change left: positions, then rewinds."""
        assert self.consumer is not None
        owned = self.consumer.assignment()
        if self._unpositioned:
            await self.seek_to_stored(sorted(self._unpositioned & owned))
        for tp in sorted(self._resets, key=str):
            if tp in owned:
                await self._rewind(tp, self._resets[tp])
            del self._resets[tp]

    async def _rewind(self, tp: TopicPartition, verdict: Changed) -> None:
        """Re-read a partition whose log changed from its log start, stored offset included.

        The rewind and the incident commit together; a failure leaves the partition paused
        and the verdict pending, so the next round tries again (never a silent skip).
        """
        assert self.consumer is not None
        start = (await self.consumer.beginning_offsets([tp])).get(tp, 0)
        async with session_scope(self.sessionmaker) as session:
            conn = await repository.raw_connection(session)
            await repository.lock_offsets(conn, self.group_id, [(tp.topic, tp.partition)])
            before = await repository.rewind_offset(
                conn, self.group_id, tp.topic, tp.partition, start
            )
            reset = LogReset(
                service="scoring",
                group=self.group_id,
                topic=self.settings.topics.base_of(tp.topic),
                partition=tp.partition,
                verdict=verdict,
                restart_at=start,
                stored=before,
            )
            await health.open_incident(conn, service="scoring", **reset.incident())
        self._seek(tp, start)
        self.anchors.forget(tp)
        self.consumer.resume(tp)
        self.log_resets += 1
        reset.log()

    async def _poison(self, record: Record, exc: BaseException) -> None:
        """Dead-letter one record that fails on its own, moving the offset past it.

        The dead letter is sent inside the transaction that moves the offset, under its
        row lock, and only if that offset was not moved already: a re-read never sends
        it twice, whichever process re-reads.
        """
        assert self.quarantine is not None
        skip = Incoming(
            None, record.topic, record.partition, record.offset, fingerprint=fingerprint(record)
        )
        async with session_scope(self.sessionmaker) as session:
            result = await process_batch(session, [skip], tz=self.tz, group_id=self.group_id)
            if result.passed_invalid:
                await self.quarantine.send(record, exc)

    async def handle(self, records: Sequence[Record]) -> BatchResult:
        """Decode, dead-letter the invalid, apply in one transaction, then advise Kafka.

        The records are split by partition into up to ``parallel`` groups, each applied in
        its own transaction on its own connection (offsets are per partition, so each group
        commits its partitions' offsets with its effects). While one group waits on
        PostgreSQL the other runs its Python part: on 2 cores this overlaps the two.
        """
        records = list(records)
        started = time.perf_counter()
        accept = frozenset(self._accept_gap)
        groups = _split_by_partition(records, self.parallel)
        outcomes = await asyncio.gather(
            *(self._apply_group(g, accept) for g in groups), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                # Groups that committed are fenced as stale when the batch is re-read.
                raise outcome
        result = _merge([o for o in outcomes if isinstance(o, BatchResult)])
        # Only after the commit: a rolled-back insert must be retried by a later batch.
        self._known_specialists.update(result.new_specialists)
        _count(result)
        elapsed = time.perf_counter() - started
        BATCH_SECONDS.observe(elapsed)
        self.batches += 1
        if self._on_batch is not None:
            self._on_batch(result, elapsed)
        await self._after_gaps(result, records)
        await self._advise_kafka(records, result)
        return result

    async def _apply_group(
        self, records: list[Record], accept: frozenset[Partition]
    ) -> BatchResult:
        items: list[Incoming] = []
        dead: list[tuple[Record, InvalidEvent]] = []
        last: dict[Partition, int] = {}
        for rec in records:
            last[(rec.topic, rec.partition)] = len(items)
            raw = rec.value or b""
            try:
                event = decode_event(raw)
            except InvalidEvent as exc:
                dead.append((rec, exc))
                items.append(Incoming(None, rec.topic, rec.partition, rec.offset))
                continue
            items.append(Incoming(event, rec.topic, rec.partition, rec.offset))
        for index in last.values():
            items[index] = replace(items[index], fingerprint=fingerprint(records[index]))
        async with session_scope(self.sessionmaker) as session:
            result = await process_batch(
                session,
                items,
                tz=self.tz,
                group_id=self.group_id,
                accept_gaps=accept,
                hours_fn=self.hours_fn,
                known_specialists=self._known_specialists,
            )
            # Decided with the offset commit (row locked, fenced re-reads excluded) and
            # acked before it: never lost, never sent again by a retry or a re-read.
            passed = set(result.passed_invalid)
            due = [d for d in dead if (d[0].topic, d[0].partition, d[0].offset) in passed]
            if due:
                await self._deadletter(due)
            return result

    async def _after_gaps(self, result: BatchResult, records: list[Record]) -> None:
        """Re-read partitions whose records started past the stored offset.

        Only a stored offset below the log start means records were lost to retention;
        any other gap (a stale fetch position after a rebalance or a retried batch) is
        healed by seeking back to the stored offset, however often it happens.
        """
        assert self.consumer is not None
        for tp_key in {(r.topic, r.partition) for r in records} - set(result.gaps):
            self._accept_gap.discard(tp_key)
        gaps = {
            TopicPartition(topic, partition): stored
            for (topic, partition), stored in result.gaps.items()
            if TopicPartition(topic, partition) in self.consumer.assignment()
        }
        if not gaps:
            return
        try:
            log_start = await self.consumer.beginning_offsets(list(gaps))
        except KafkaError as exc:
            logger.warning("scoring: cannot read log start offsets (%r); re-reading", exc)
            log_start = {}
        for tp, stored in gaps.items():
            start = log_start.get(tp)
            if start is not None and stored < start:
                # Documented policy: continue from the log start, loudly.
                logger.error(
                    "scoring: %s[%d] stored offset %d is below the log start %d; "
                    "records in between were never applied and are lost to retention",
                    tp.topic,
                    tp.partition,
                    stored,
                    start,
                )
                OFFSET_GAPS.inc()
                topic = self.settings.topics.base_of(tp.topic)
                await self.reporter.open(
                    f"offset_gap:{self.group_id}:{topic}",
                    health.OFFSET_GAP,
                    f"Records of {topic} expired (retention) before scoring applied them; "
                    "scoring continued from the log start. Re-send the missing period.",
                    {
                        "group": self.group_id,
                        "topic": topic,
                        "partitions": {
                            str(tp.partition): {
                                "stored_offset": stored,
                                "log_start": start,
                                "lost": start - stored,
                            }
                        },
                    },
                )
                self._accept_gap.add((tp.topic, tp.partition))
                self._seek(tp, start)
            else:
                self._seek(tp, stored)

    async def _advise_kafka(self, records: list[Record], result: BatchResult) -> None:
        # The database holds the truth; this only keeps Kafka's lag figures meaningful.
        assert self.consumer is not None
        last: dict[TopicPartition, int] = {}
        for rec in records:
            if (rec.topic, rec.partition) in result.gaps:
                continue
            tp = TopicPartition(rec.topic, rec.partition)
            last[tp] = max(last.get(tp, 0), rec.offset + 1)
        owned = {tp: o for tp, o in last.items() if tp in self.consumer.assignment()}
        if not owned:
            return
        try:
            await self.consumer.commit(owned)
        except (KafkaError, AssertionError) as exc:
            logger.info("scoring: advisory offset commit skipped: %s", exc)

    async def _deadletter(self, dead: list[tuple[Record, InvalidEvent]]) -> None:
        assert self.producer is not None
        now = utcnow()
        futures = []
        for rec, exc in dead:
            source = Source("kafka", EVENTS, rec.partition, rec.offset)
            value = deadletter_value(rec.value or b"", exc, source, now)
            futures.append(
                await self.producer.send(self.settings.topics.deadletter, value, key=rec.key)
            )
        # Acked before the offsets move in the database: a dead letter is never lost.
        await asyncio.gather(*futures)
        logger.warning("scoring: dead-lettered %d invalid records", len(dead))

    async def _backoff(self, attempt: int, reason: str) -> None:
        self.healthy, self.last_error = False, reason
        delay = min(10.0, 0.2 * 2 ** min(attempt, 10)) * (0.5 + random.random() / 2)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)


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
            conn = await repository.raw_connection(session)
            count = await repository.enqueue_clock(conn, since)
        logger.info("scoring relay: clock sweep queued %d specialists", count)
        return count

    async def publish_once(self) -> int:
        """One relay round; returns how many specialists were published (0 = idle or busy)."""
        async with session_scope(self.sessionmaker) as session:
            conn = await repository.raw_connection(session)
            # One active relay across processes; others idle instead of double-publishing.
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", RELAY_LOCK_KEY):
                return 0
            pending = await repository.pending_scores(conn, RELAY_BATCH)
            if not pending:
                return 0
            now = self.clock()
            as_of = self.config.measure.today(now)
            window = self.config.alert_window_at(as_of)
            ids = [p[0] for p in pending]
            values = await snapshots.window_kpis(session, ids, window, self.config.lines)
            teams: dict[str, str | None] = dict(
                (
                    await session.execute(
                        text("SELECT id, team_id FROM specialists WHERE id = ANY(:ids)"),
                        {"ids": ids},
                    )
                ).all()
            )
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
            await repository.delete_published(conn, [(p[0], p[2]) for p in pending])
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


class DedupRetention:
    """Forgets applied event ids older than ``KPI_DEDUP_RETENTION_DAYS`` (the replay horizon).

    Runs in every scoring process; an advisory lock lets one of them work at a time. Each
    chunk is its own short transaction so claims of new events never wait long behind it.
    """

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        clock: Clock = utcnow,
        interval_seconds: float = RETENTION_INTERVAL_SECONDS,
        chunk: int = RETENTION_CHUNK,
    ) -> None:
        self.days = settings.dedup_retention_days
        self.sessionmaker = sessionmaker
        self.clock = clock
        self.interval_seconds = interval_seconds
        self.chunk = chunk
        self._stopping = asyncio.Event()
        self.purged = 0

    def stop(self) -> None:
        self._stopping.set()

    async def purge(self) -> int:
        """Delete every expired id now (chunk by chunk); returns how many went."""
        if self.days == 0:
            return 0
        before = self.clock() - timedelta(days=self.days)
        total = 0
        while not self._stopping.is_set():
            async with session_scope(self.sessionmaker) as session:
                conn = await repository.raw_connection(session)
                if not await conn.fetchval(
                    "SELECT pg_try_advisory_xact_lock($1)", RETENTION_LOCK_KEY
                ):
                    break  # another scoring process is purging
                done = await repository.purge_processed(conn, before, self.chunk)
            total += done
            DEDUP_PURGED.inc(done)
            if done < self.chunk:
                break
        if total:
            logger.info(
                "scoring: forgot %d event ids first seen before %s (retention %d days)",
                total,
                before.isoformat(),
                self.days,
            )
        self.purged += total
        return total

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.purge()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Retention is housekeeping: a failed round is retried at the next one.
                logger.exception("scoring: dedup retention round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_seconds)


async def start_engine(
    runtime: Runtime, config: ScoringConfig, *, clock: Clock | None = None
) -> None:
    """Start the scoring consumer and the kpi.scores relay as runtime-owned tasks."""
    settings = runtime.settings
    if config.measure.hours_fn is not None:
        logger.info("scoring: response times in business hours of %s", config.measure.calendar)
    consumer = ScoringConsumer(
        settings,
        runtime.sessionmaker,
        # The prefix isolates installations (and tests) sharing one cluster, like topics.
        group_id=f"{settings.topic_prefix}{GROUP_ID}",
        max_records=settings.scoring_max_batch,
        consumer_options={
            "session_timeout_ms": settings.scoring_session_timeout_ms,
            "heartbeat_interval_ms": max(100, settings.scoring_session_timeout_ms // 5),
        },
        config=config,
    )
    await consumer.start()
    relay_producer = create_producer(settings.bootstrap_servers, client_id="kpi-scoring-relay")
    await relay_producer.start()
    relay = ScoreRelay(
        settings, runtime.sessionmaker, relay_producer, clock=clock or utcnow, config=config
    )
    retention = DedupRetention(settings, runtime.sessionmaker, clock=clock or utcnow)
    tasks = [
        runtime.spawn(consumer.run(), "scoring-consumer"),
        runtime.spawn(consumer.watch.run(), "scoring-stall-watch"),
        runtime.spawn(relay.run(), "scoring-relay"),
        runtime.spawn(retention.run(), "scoring-dedup-retention"),
    ]

    async def shutdown() -> None:
        # Let the current batch and relay round finish before their clients close.
        consumer.stop()
        relay.stop()
        retention.stop()
        await asyncio.wait(tasks, timeout=10)
        await consumer.close()
        await relay_producer.stop()

    runtime.stoppers.append(shutdown)
    runtime.extra_checks["scoring_consumer"] = lambda: (
        None if consumer.healthy else consumer.last_error or "consumer failing"
    )
    runtime.extra_checks["scoring_stall"] = consumer.watch.problem
    runtime.extra_checks["scoring_relay"] = lambda: (
        None if relay.healthy else relay.last_error or "relay failing"
    )
