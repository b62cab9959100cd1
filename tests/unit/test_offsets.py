"""Offsets that know their log (shared/offsets.py): verification, position checks, jumps."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from shared.offsets import (
    BEYOND_LOG_END,
    POSITION_RESET,
    RECORD_MISMATCH,
    LogCheck,
    fingerprint,
)

TP = ("kpi.events", 0)


@dataclass(frozen=True)
class Rec:
    offset: int
    value: bytes
    timestamp: int = 1_700_000_000_000
    key: bytes | None = b"k"


def log_of(values: list[bytes]) -> list[Rec]:
    return [Rec(i, v) for i, v in enumerate(values)]


def test_fingerprint_ignores_the_offset_but_not_the_content() -> None:
    a = Rec(5, b"x")
    assert fingerprint(a) == fingerprint(Rec(9, b"x"))
    assert fingerprint(a) != fingerprint(Rec(5, b"y"))
    assert fingerprint(a) != fingerprint(Rec(5, b"x", timestamp=1))
    assert fingerprint(a) != fingerprint(Rec(5, b"x", key=b"other"))
    assert fingerprint(Rec(0, b"", key=None)) == fingerprint(Rec(0, b"", key=b""))


def test_verification_drops_the_applied_record_and_keeps_the_rest() -> None:
    log = log_of([b"a", b"b", b"c", b"d"])
    check = LogCheck()
    assert check.verify(TP, 2, fingerprint(log[1])) == 1
    drop, verdict = check.records(TP, log[1:])
    assert (drop, verdict) == (1, None)
    assert check.expected(TP) == 4
    assert not check.pending_verification(TP)


def test_a_different_record_below_the_stored_offset_is_a_replaced_log() -> None:
    check = LogCheck()
    check.verify(TP, 2, fingerprint(Rec(1, b"old")))
    drop, verdict = check.records(TP, [Rec(1, b"new"), Rec(2, b"more")])
    assert drop == 2
    assert verdict is not None and verdict.reason == RECORD_MISMATCH
    assert verdict.expected == 2


def test_a_vanished_record_is_not_judged_here() -> None:
    # Retention or compaction removed offset 1: the engine's gap logic judges offset 5.
    check = LogCheck()
    check.verify(TP, 2, "whatever")
    assert check.records(TP, [Rec(5, b"e")]) == (0, None)


def test_records_below_the_expected_position_mean_the_client_reset_it() -> None:
    check = LogCheck()
    check.seeked(TP, 10)
    drop, verdict = check.records(TP, [Rec(0, b"a")])
    assert drop == 1
    assert verdict is not None and verdict.reason == POSITION_RESET
    assert (verdict.expected, verdict.found) == (10, 0)


def test_own_seeks_back_are_not_resets() -> None:
    check = LogCheck()
    check.seeked(TP, 0)
    assert check.records(TP, log_of([b"a", b"b"])) == (0, None)
    check.seeked(TP, 0)  # a failed batch is re-read
    assert check.records(TP, log_of([b"a", b"b"])) == (0, None)
    check.forget(TP)  # revoked, then positioned by Kafka
    assert check.records(TP, [Rec(1, b"b")]) == (0, None)


def test_position_beyond_the_high_water_mark_must_last() -> None:
    check = LogCheck(confirm_seconds=1.0)
    assert check.position(TP, 50, 10, answered_at=100.0) is None  # first sight
    assert check.position(TP, 50, 10, answered_at=100.5) is None  # not long enough
    verdict = check.position(TP, 50, 10, answered_at=101.2)
    assert verdict is not None and verdict.reason == BEYOND_LOG_END
    assert (verdict.expected, verdict.found) == (50, 10)
    # Caught up or unknown: never a verdict, and the clock starts again.
    assert check.position(TP, 10, 10, answered_at=102.0) is None
    assert check.position(TP, None, 10, answered_at=103.0) is None
    assert check.position(TP, 11, None, answered_at=104.0) is None
    assert check.position(TP, 11, 10, answered_at=None) is None
    assert check.position(TP, 11, 10, answered_at=105.0) is None


def test_a_stale_mark_held_through_a_broker_pause_is_no_log_reset() -> None:
    """Seen in a chaos campaign: one answer with a low mark, then the broker is paused for
    27 s (no answers, the client keeps that mark), then answers resume with the right one.
    Counted by the wall clock the low mark "lasted" 27 s and every partition was rewound."""
    check = LogCheck()  # production windows
    assert check.position(TP, 1097, 968, answered_at=1000.0) is None
    for _ in range(28):  # the scan runs on, the client still holds that answer
        assert check.position(TP, 1097, 968, answered_at=1000.0) is None
    # The first answers after the pause may still be low; the silence restarted the window.
    assert check.position(TP, 1097, 968, answered_at=1027.0) is None
    assert check.position(TP, 1097, 968, answered_at=1027.5) is None
    assert check.position(TP, 1097, 1180, answered_at=1028.0) is None  # the true end
    assert check.position(TP, 1097, 968, answered_at=1040.0) is None  # a new window


def test_a_log_that_stays_short_in_every_answer_is_a_reset() -> None:
    check = LogCheck(confirm_seconds=15.0, answer_gap=5.0)
    t = 500.0
    verdict = None
    while verdict is None and t < 600:
        verdict = check.position(TP, 1097, 0, answered_at=t)
        t += 0.5  # the broker answers every empty fetch after its 500 ms wait
    assert verdict is not None and verdict.reason == BEYOND_LOG_END
    assert 515.0 <= t - 0.5 <= 515.5


@given(
    answers=st.lists(
        st.tuples(st.floats(min_value=0.01, max_value=8.0), st.booleans()), max_size=80
    )
)
def test_reference_model_a_verdict_needs_answers_low_for_the_whole_window(
    answers: list[tuple[float, bool]],
) -> None:
    """Reference: a verdict comes exactly when the answers since the last correct mark or
    silence longer than the gap span at least the window, all showing the position beyond."""
    check = LogCheck(confirm_seconds=15.0, answer_gap=5.0)
    t, since, last = 0.0, None, None
    for step, low in answers:
        t += step
        verdict = check.position(TP, 100, 50 if low else 100, answered_at=t)
        if not low:
            since = last = None
            expected = False
        elif since is None or last is None or t - last > 5.0:
            since = last = t
            expected = False
        else:
            last = t
            expected = t - since >= 15.0
            if expected:
                since = last = None
        assert (verdict is not None) == expected


@given(
    old=st.lists(st.binary(max_size=3), min_size=1, max_size=12),
    new=st.lists(st.binary(max_size=3), max_size=12),
    applied=st.integers(min_value=1, max_value=12),
)
def test_reference_model_a_restart_is_reset_exactly_when_the_log_is_not_ours(
    old: list[bytes], new: list[bytes], applied: int
) -> None:
    """After applying ``applied`` records of ``old`` the broker serves ``new``.

    Reference: continuing at the stored offset is right only when ``new`` holds the same
    record below it; otherwise the consumer must say the log changed (it may only wait
    while the new log is exactly one record short of the stored offset: nothing to read).
    """
    applied = min(applied, len(old))
    stored, fp = applied, fingerprint(Rec(applied - 1, old[applied - 1]))
    # Same content at the same offset keeps the old timestamp (the same record).
    new_log = [
        Rec(i, v) if i < len(old) and old[i] == v else Rec(i, v, timestamp=2)
        for i, v in enumerate(new)
    ]
    check = LogCheck(confirm_seconds=0)
    seek = check.verify(TP, stored, fp)
    fetched = [r for r in new_log if r.offset >= seek]
    _, verdict = check.records(TP, fetched)
    if verdict is None:
        highwater = len(new_log)
        check.position(TP, seek if not fetched else None, highwater, answered_at=0.0)
        verdict = check.position(TP, seek if not fetched else None, highwater, answered_at=1.0)
    same_record = len(new) >= stored and new[stored - 1] == old[stored - 1]
    if same_record:
        assert verdict is None
    elif len(new) == stored - 1:
        assert verdict is None  # position == high-water mark: waits for the next record
    else:
        assert verdict is not None
