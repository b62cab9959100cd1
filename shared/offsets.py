"""Offsets that know which log they belong to: pure checks that a partition's log is the one
whose position we hold (memory broker restarted, topic re-created, cluster rebuilt).

The consumer adapters do the I/O; this module only decides, from what they observed:
- ``verify``: after seeking to ``stored - 1``, the first record read back must be the very
  record we applied there (same fingerprint). A different record means the log was replaced
  even if the new one is already longer than our position.
- ``position``: a fetch position above the partition's high-water mark means the log is now
  shorter than what we read (Kafka answers such a fetch with OffsetOutOfRange; the embedded
  broker answers with nothing, forever). It must hold in every fetch answer the broker gives
  over ``CONFIRM_SECONDS`` of answers: time in which the broker said nothing is no evidence.
- ``jumped``: records arriving below the position we expect without us seeking there mean
  the client reset the position itself (auto.offset.reset after OffsetOutOfRange).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final, Protocol

# Why a verdict says the log changed; stable strings (logs, incident detail).
RECORD_MISMATCH: Final = "record_mismatch"
BEYOND_LOG_END: Final = "beyond_log_end"
POSITION_RESET: Final = "position_reset"

# A position above the high-water mark must be what the broker keeps answering for this
# long before it counts. The mark a client holds is the one of the last fetch answer, which
# can be low for a moment (the embedded broker's answers under a burst of produce requests,
# a new Kafka leader) and then stays low for as long as the broker says nothing. A chaos
# campaign paused the broker for 24 s just after such a moment: counted by the wall clock,
# the stale mark "lasted" 24 s and every partition was rewound to 0. So the window is
# measured in answers: from the first answer that shows the position beyond the mark to a
# later one that still does, with no silence longer than ANSWER_GAP_SECONDS in between.
CONFIRM_SECONDS: Final = 15.0
ANSWER_GAP_SECONDS: Final = 5.0


class RecordLike(Protocol):
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


def fingerprint(record: RecordLike) -> str:
    """A short identity of one record: its timestamp, key and value (not its offset)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(int(record.timestamp or 0).to_bytes(8, "big", signed=True))
    key = record.key or b""
    digest.update(len(key).to_bytes(4, "big"))
    digest.update(key)
    digest.update(record.value or b"")
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Changed:
    """The log no longer matches: what we held and what we found."""

    reason: str
    expected: int  # the offset we held (stored next offset, or the fetch position)
    found: int | None  # what the broker showed: the record's offset or the high-water mark

    def describe(self) -> str:
        if self.reason == RECORD_MISMATCH:
            return (
                f"the record at offset {self.expected - 1} is not the one applied there "
                "(the log was replaced)"
            )
        if self.reason == BEYOND_LOG_END:
            return (
                f"position {self.expected} is beyond the log end {self.found} "
                "(the log is shorter than what was read)"
            )
        return (
            f"records restarted at offset {self.found} below position {self.expected} "
            "(the client reset its position)"
        )


@dataclass(slots=True)
class _Partition:
    expected_next: int | None = None  # the offset the next record should have
    verify_at: int | None = None  # offset of the record to compare (stored - 1)
    verify_fp: str | None = None
    above_hw_since: float | None = None  # the first answer showing the position beyond
    above_hw_last: float | None = None  # the latest such answer


class LogCheck:
    """Per-partition expectations of one consumer; fed by its loop, answers verdicts."""

    def __init__(
        self, confirm_seconds: float = CONFIRM_SECONDS, answer_gap: float = ANSWER_GAP_SECONDS
    ) -> None:
        self._parts: dict[tuple[str, int], _Partition] = {}
        self._confirm = confirm_seconds
        self._gap = answer_gap

    def forget(self, tp: tuple[str, int]) -> None:
        self._parts.pop(tp, None)

    def clear(self) -> None:
        self._parts.clear()

    def seeked(self, tp: tuple[str, int], offset: int | None) -> None:
        """We positioned ``tp`` at ``offset`` ourselves (None: at the log start)."""
        self._parts[tp] = _Partition(expected_next=offset)

    def verify(self, tp: tuple[str, int], stored: int, fp: str) -> int:
        """Expect the record at ``stored - 1`` to have ``fp``; returns where to seek."""
        self._parts[tp] = _Partition(expected_next=stored - 1, verify_at=stored - 1, verify_fp=fp)
        return stored - 1

    def expected(self, tp: tuple[str, int]) -> int | None:
        """The offset the next record of ``tp`` should have (None: not known)."""
        part = self._parts.get(tp)
        return part.expected_next if part is not None else None

    def pending_verification(self, tp: tuple[str, int]) -> bool:
        part = self._parts.get(tp)
        return part is not None and part.verify_at is not None

    def records(self, tp: tuple[str, int], records: list[RecordLike]) -> tuple[int, Changed | None]:
        """Check the records fetched for ``tp`` (offset order).

        Returns how many leading records to drop (the verified record, already applied)
        and a verdict when the log changed (then drop all of them).
        """
        if not records:
            return 0, None
        part = self._parts.setdefault(tp, _Partition())
        first = records[0]
        drop = 0
        if part.verify_at is not None:
            at, fp = part.verify_at, part.verify_fp
            part.verify_at = part.verify_fp = None
            if first.offset == at:
                if fingerprint(first) != fp:
                    return len(records), Changed(RECORD_MISMATCH, at + 1, first.offset)
                drop = 1
            elif first.offset < at:
                return len(records), Changed(POSITION_RESET, at, first.offset)
            # first.offset > at: the record is gone (retention, compaction); nothing to
            # compare, and a gap past the stored offset is the engine's to judge.
        elif part.expected_next is not None and first.offset < part.expected_next:
            return len(records), Changed(POSITION_RESET, part.expected_next, first.offset)
        part.expected_next = records[-1].offset + 1
        part.above_hw_since = part.above_hw_last = None
        return drop, None

    def position(
        self,
        tp: tuple[str, int],
        position: int | None,
        highwater: int | None,
        answered_at: float | None,
    ) -> Changed | None:
        """Judge a fetch position against the high-water mark of the broker's answer to the
        fetch of ``tp`` received at ``answered_at`` (seconds; None: no answer yet)."""
        part = self._parts.setdefault(tp, _Partition())
        if position is None or highwater is None or answered_at is None or position <= highwater:
            part.above_hw_since = part.above_hw_last = None
            return None
        last = part.above_hw_last
        if part.above_hw_since is None or last is None or answered_at - last > self._gap:
            # First sight, or the broker was silent in between: the window starts here.
            part.above_hw_since = part.above_hw_last = answered_at
            return None
        if answered_at <= last:
            return None  # the same answer seen again is no new evidence
        part.above_hw_last = answered_at
        if answered_at - part.above_hw_since < self._confirm:
            return None
        part.above_hw_since = part.above_hw_last = None
        return Changed(BEYOND_LOG_END, position, highwater)
