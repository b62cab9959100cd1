"""Kafka side of offsets that know their log: watch a consumer's partitions, re-read anchor
records, and say loudly what was found and done (``shared.offsets`` decides)."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError

from shared import health
from shared.db import utcnow
from shared.kafka_clients import create_consumer
from shared.kafka_settings import KafkaSecurity
from shared.metrics import LOG_RESETS
from shared.offsets import BEYOND_LOG_END, RECORD_MISMATCH, Changed, LogCheck, fingerprint

logger = logging.getLogger(__name__)

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
# How often a running consumer re-reads the record it applied last time (AnchorCheck).
ANCHOR_INTERVAL_SECONDS = 15.0


class LogWatch:
    """Finds partitions whose broker log no longer matches the consumer's position.

    Wraps the pure ``LogCheck`` with the consumer's observations: the records of each fetch
    (verification of the record last applied, positions moved back) and, at most twice a
    second, each position against the partition's high-water mark.
    """

    def __init__(self, check: LogCheck | None = None, interval: float = 0.5) -> None:
        self.check = check or LogCheck()
        self._interval = interval
        self._last_scan = 0.0

    async def scan(
        self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[Record]]
    ) -> dict[TopicPartition, Changed]:
        """Verdicts per changed partition; their records are removed from ``batches``
        (and an already-applied record read back for verification is dropped)."""
        changed: dict[TopicPartition, Changed] = {}
        for tp, recs in list(batches.items()):
            drop, verdict = self.check.records((tp.topic, tp.partition), recs)
            if verdict is not None:
                changed[tp] = verdict
                del batches[tp]
            elif drop:
                batches[tp] = recs[drop:]
                if not batches[tp]:
                    del batches[tp]
        now = time.monotonic()
        if now - self._last_scan < self._interval:
            return changed
        self._last_scan = now
        for tp in consumer.assignment():
            if tp in changed:
                continue
            key = (tp.topic, tp.partition)
            highwater = consumer.highwater(tp)
            position = self.check.expected(key)
            if position is None and highwater is not None:
                # Positioned by Kafka (committed offset): a fetch answered, so the client's
                # position is valid and returned at once.
                with contextlib.suppress(KafkaError, AssertionError):
                    position = await consumer.position(tp)
            verdict = self.check.position(key, position, highwater, _answered_at(consumer, tp))
            if verdict is not None:
                changed[tp] = verdict
        return changed


def _answered_at(consumer: AIOKafkaConsumer, tp: TopicPartition) -> float | None:
    """When the broker's last fetch answer for ``tp`` (and its high-water mark) arrived."""
    with contextlib.suppress(AssertionError):
        polled_ms = consumer.last_poll_timestamp(tp)
        return None if polled_ms is None else polled_ms / 1000.0
    return None


class AnchorCheck:
    """While a consumer runs, re-read now and then the record it applied a while ago.

    The position check catches a log that became shorter, and the assignment check (scoring)
    a log replaced while nobody held the partition. A topic deleted and re-created while the
    consumer runs, and refilled past its position before anything else notices, shows only
    here: the record this consumer applied at offset A (its anchor, taken one interval ago)
    is no longer the record at A. Then the caller re-reads the partition from its log start.

    The side reader has no group and commits nothing; each check costs one small fetch per
    owned partition every ``interval`` seconds.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        interval: float = ANCHOR_INTERVAL_SECONDS,
        client_id: str = "",
        security: KafkaSecurity | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._security = security
        self._interval = interval
        self._client_id = client_id or f"kpi-anchor-{uuid.uuid4().hex[:6]}"
        self._latest: dict[TopicPartition, tuple[int, str]] = {}
        self._anchors: dict[TopicPartition, tuple[int, str]] = {}
        self._due = time.monotonic() + interval
        self._reader: AIOKafkaConsumer | None = None

    def applied(self, records: Iterable[Record]) -> None:
        """Records just committed: the last one of each partition is the next anchor."""
        last: dict[TopicPartition, Record] = {}
        for rec in records:
            last[TopicPartition(rec.topic, rec.partition)] = rec
        for tp, rec in last.items():
            self._latest[tp] = (rec.offset, fingerprint(rec))
            # The first record applied is the first anchor: a log replaced before the first
            # check must show at that check.
            self._anchors.setdefault(tp, self._latest[tp])

    def forget(self, tp: TopicPartition) -> None:
        self._latest.pop(tp, None)
        self._anchors.pop(tp, None)

    async def check(self, owned: set[TopicPartition]) -> dict[TopicPartition, Changed]:
        """Verdicts for owned partitions whose anchor record changed; cheap when not due."""
        now = time.monotonic()
        if now < self._due:
            return {}
        self._due = now + self._interval
        anchors = {tp: a for tp, a in self._anchors.items() if tp in owned}
        try:
            verdicts = await self._verify(anchors) if anchors else {}
        except KafkaError as exc:
            logger.info("anchor check skipped: %s", exc)
            verdicts = {}
        self._anchors = {
            tp: latest for tp, latest in self._latest.items() if tp in owned and tp not in verdicts
        }
        for tp in verdicts:
            self.forget(tp)
        return verdicts

    async def confirm(
        self, changed: dict[TopicPartition, Changed]
    ) -> dict[TopicPartition, Changed]:
        """Keep a "beyond the log end" verdict only if the log really ends before it.

        That verdict rests on the high-water mark the client holds, which can be stale or
        wrong (after a broker pause the embedded broker's ListOffsets answers the last
        batch's base offset + 1; a new Kafka leader may briefly report a lower mark). While
        the record just before the position is still there, unchanged, the log was not
        cut: re-reading it from the start would only repeat work and dead letters.
        """
        suspects: dict[TopicPartition, tuple[int, str]] = {}
        for tp, verdict in changed.items():
            if verdict.reason != BEYOND_LOG_END or verdict.expected <= 0:
                continue
            at = verdict.expected - 1
            latest = self._latest.get(tp)
            suspects[tp] = (at, latest[1] if latest is not None and latest[0] == at else "")
        if not suspects:
            return changed
        try:
            confirmed = await self._verify(suspects)
        except KafkaError as exc:
            # Unconfirmed now; the position check fires again if the mark stays low.
            logger.info("log end check deferred: %s", exc)
            confirmed = {}
        kept = {tp: v for tp, v in changed.items() if tp not in suspects}
        kept.update(confirmed)
        for tp in suspects.keys() - confirmed.keys():
            logger.warning(
                "%s[%d]: the high-water mark %s is below the position %d, but the record at "
                "%d is still there: not a log reset, reading on",
                tp.topic,
                tp.partition,
                changed[tp].found,
                changed[tp].expected,
                suspects[tp][0],
            )
        return kept

    async def _verify(
        self, anchors: dict[TopicPartition, tuple[int, str]]
    ) -> dict[TopicPartition, Changed]:
        """Read the record at each anchor's offset (one fetch for all, 3 s at most)."""
        reader = await self._reader_for(set(anchors))
        for tp, (offset, _) in anchors.items():
            reader.seek(tp, offset)
        reader.resume(*anchors)
        try:
            return await self._read_anchors(reader, anchors)
        finally:
            # Paused between checks: the reader must not follow the log in the background.
            reader.pause(*reader.assignment())

    async def _read_anchors(
        self, reader: AIOKafkaConsumer, anchors: dict[TopicPartition, tuple[int, str]]
    ) -> dict[TopicPartition, Changed]:
        verdicts: dict[TopicPartition, Changed] = {}
        pending = set(anchors)
        deadline = time.monotonic() + 3.0
        # Only a mark from an answer to this check counts: the reader keeps the mark of its
        # previous check, which a broker busy after a pause may not have replaced yet.
        asked_at = int(time.time() * 1000) / 1000.0  # the client stamps answers in ms
        while pending and time.monotonic() < deadline:
            try:
                got = await reader.getmany(*pending, timeout_ms=500, max_records=len(pending))
            except OffsetOutOfRangeError as exc:
                refused = {tp for tp in (exc.args[0] if exc.args else {}) if tp in pending}
                starts = await reader.beginning_offsets(sorted(refused)) if refused else {}
                for tp in refused:
                    pending.discard(tp)
                    offset = anchors[tp][0]
                    if offset >= starts.get(tp, 0):  # below the start: retention took it
                        verdicts[tp] = Changed(BEYOND_LOG_END, offset + 1, None)
                continue
            for tp in list(pending):
                offset, fp = anchors[tp]
                recs = got.get(tp)
                answered_at = _answered_at(reader, tp)
                fresh = answered_at is not None and answered_at >= asked_at
                highwater = reader.highwater(tp) if fresh else None
                if recs:
                    pending.discard(tp)
                    first = recs[0]
                    # An empty fingerprint asks only whether the record is there.
                    if first.offset == offset and fp and fingerprint(first) != fp:
                        verdicts[tp] = Changed(RECORD_MISMATCH, offset + 1, first.offset)
                    # Otherwise the same record, or gone (compaction): nothing to say.
                elif highwater is not None and highwater <= offset:
                    # The embedded broker answers a fetch beyond the end with nothing.
                    pending.discard(tp)
                    verdicts[tp] = Changed(BEYOND_LOG_END, offset + 1, highwater)
        return verdicts

    async def _reader_for(self, partitions: set[TopicPartition]) -> AIOKafkaConsumer:
        if self._reader is None:
            self._reader = create_consumer(
                self._bootstrap,
                group_id=None,
                client_id=self._client_id,
                security=self._security,
                auto_offset_reset="none",
            )
            await self._reader.start()
        if not partitions <= self._reader.assignment():
            self._reader.assign(sorted(partitions | self._reader.assignment()))
        return self._reader

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(Exception):
                await reader.stop()


@dataclass(frozen=True, slots=True)
class LogReset:
    """One partition whose broker log no longer matched the position held, and what was done."""

    service: str
    group: str
    topic: str  # public (unprefixed) name
    partition: int
    verdict: Changed
    restart_at: int
    stored: int | None = None  # the stored offset replaced (offsets kept outside Kafka)

    def log(self) -> None:
        """The ERROR line and the metric."""
        LOG_RESETS.labels(self.service, self.topic).inc()
        logger.error(
            "%s: the broker's log of %s[%d] no longer matches the position held: %s%s; "
            "re-reading the partition from offset %d. Re-read records are recognised by "
            "event id and count once; new ones all count.",
            self.service,
            self.topic,
            self.partition,
            self.verdict.describe(),
            "" if self.stored is None else f" (stored offset {self.stored})",
            self.restart_at,
        )

    def incident(self) -> dict[str, Any]:
        """``key``, ``kind``, ``summary`` and ``detail`` of the platform-health incident."""
        return {
            "key": f"log_reset:{self.group or self.service}:{self.topic}",
            "kind": health.LOG_RESET,
            "summary": (
                f"The broker's log of {self.topic} was reset or replaced (memory broker "
                f"restarted, topic re-created or cluster rebuilt); {self.service} re-read it "
                "from the log start, counting only records it had not counted yet"
            ),
            "detail": {
                "group": self.group,
                "topic": self.topic,
                "partitions": {
                    str(self.partition): {
                        "reason": self.verdict.reason,
                        "what": self.verdict.describe(),
                        "expected_offset": self.verdict.expected,
                        "found": self.verdict.found,
                        "stored_offset": self.stored,
                        "restarted_at": self.restart_at,
                        "detected_at": utcnow().isoformat(),
                    }
                },
            },
        }
