"""Where each partition continues: offsets stored in PostgreSQL, checked against the log."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scoring.db import raw_connection
from services.scoring.engine import repository
from services.scoring.engine.handlers import BatchResult
from shared import health
from shared.db import session_scope
from shared.health import HealthReporter
from shared.kafka import LoggingRebalanceListener, Record
from shared.logwatch import AnchorCheck, LogReset, LogWatch
from shared.offsets import Changed
from shared.settings import Settings

logger = logging.getLogger(__name__)

Partition = tuple[str, int]
Fetched = dict[TopicPartition, list[Record]]

OFFSET_GAPS = Counter(
    "kpi_scoring_offset_gaps_total",
    "Partitions whose stored offset was no longer in the log (continued from the log start)",
)


class StoredPositions:
    """Positions partitions at their stored offsets; rewinds changed logs, heals gaps.

    The offsets stored with the effects know which log they belong to: with each offset the
    identity of the record just below it is stored, and after every assignment that record
    is read back and compared. A log that was replaced or is shorter than the stored offset
    (memory broker restarted, topic re-created, cluster rebuilt) is reported loudly and
    re-read from its start; event-id dedup keeps re-read records from counting twice.
    """

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        group_id: str,
        reporter: HealthReporter,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.group_id = group_id
        self.reporter = reporter
        self.consumer: AIOKafkaConsumer | None = None
        self.logs = LogWatch()
        self.anchors = AnchorCheck(
            settings.bootstrap_servers,
            client_id="kpi-scoring-anchor",
            security=settings.kafka_security,
        )
        self.accepted_gaps: set[Partition] = set()
        # Partitions whose log changed and that wait (paused) for their stored offset to
        # be rewound; partitions assigned while their stored offset could not be read.
        self._resets: dict[TopicPartition, Changed] = {}
        self._unpositioned: set[TopicPartition] = set()
        self.log_resets = 0

    def listener(self) -> LoggingRebalanceListener:
        return _SeekToStored(self)

    async def close(self) -> None:
        await self.anchors.close()

    def revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            self.logs.check.forget((tp.topic, tp.partition))
            self.anchors.forget(tp)
            self._resets.pop(tp, None)
            self._unpositioned.discard(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
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
                conn = await raw_connection(session)
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
                self.seek(tp, offset)
        if fresh:
            starts = await self.consumer.beginning_offsets(fresh)
            for tp in fresh:
                self.seek(tp, starts.get(tp, 0))
        self.consumer.resume(*assigned)
        self._unpositioned.difference_update(assigned)
        logger.info(
            "scoring: %d partitions continue from stored offsets (%d checked against the "
            "record last applied), %d never applied start at their log start",
            len(stored),
            verified,
            len(fresh),
        )

    async def settle(self) -> None:
        """Finish what a rebalance or a log change left: positions, then rewinds."""
        assert self.consumer is not None
        owned = self.consumer.assignment()
        if self._unpositioned:
            await self.seek_to_stored(sorted(self._unpositioned & owned))
        for tp in sorted(self._resets, key=str):
            if tp in owned:
                await self._rewind(tp, self._resets[tp])
            del self._resets[tp]

    async def hold_changed(self, fetched: Fetched) -> None:
        """Drop (and pause) what belongs to a log that changed; it is rewound next round."""
        assert self.consumer is not None
        changed = await self.anchors.confirm(await self.logs.scan(self.consumer, fetched))
        changed.update(await self.anchors.check(self.consumer.assignment()))
        for tp, verdict in changed.items():
            self.consumer.pause(tp)
            fetched.pop(tp, None)
            self._resets[tp] = verdict

    async def _rewind(self, tp: TopicPartition, verdict: Changed) -> None:
        """Re-read a partition whose log changed from its log start, stored offset included.

        The rewind and the incident commit together; a failure leaves the partition paused
        and the verdict pending, so the next round tries again (never a silent skip).
        """
        assert self.consumer is not None
        start = (await self.consumer.beginning_offsets([tp])).get(tp, 0)
        async with session_scope(self.sessionmaker) as session:
            conn = await raw_connection(session)
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
        self.seek(tp, start)
        self.anchors.forget(tp)
        self.consumer.resume(tp)
        self.log_resets += 1
        reset.log()

    async def after_gaps(self, result: BatchResult, records: list[Record]) -> None:
        """Re-read partitions whose records started past the stored offset.

        Only a stored offset below the log start means records were lost to retention;
        any other gap (a stale fetch position after a rebalance or a retried batch) is
        healed by seeking back to the stored offset, however often it happens.
        """
        assert self.consumer is not None
        for tp_key in {(r.topic, r.partition) for r in records} - set(result.gaps):
            self.accepted_gaps.discard(tp_key)
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
                await self._lost_to_retention(tp, stored, start)
                self.accepted_gaps.add((tp.topic, tp.partition))
                self.seek(tp, start)
            else:
                self.seek(tp, stored)

    async def _lost_to_retention(self, tp: TopicPartition, stored: int, start: int) -> None:
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


class _SeekToStored(LoggingRebalanceListener):
    """On assignment, continue from the offsets committed with the effects in PostgreSQL."""

    def __init__(self, positions: StoredPositions) -> None:
        super().__init__("scoring")
        self._positions = positions

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await super().on_partitions_revoked(revoked)
        self._positions.revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await super().on_partitions_assigned(assigned)
        await self._positions.seek_to_stored(assigned)
