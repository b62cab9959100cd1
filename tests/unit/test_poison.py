"""Poison isolation (shared/poison.py): which failures are a record's fault, and bisection."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import DBAPIError, OperationalError

from shared.poison import is_transient, isolate


def _pg(cls: type[asyncpg.PostgresError]) -> asyncpg.PostgresError:
    return cls("message")


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (OSError("network unreachable"), True),
        (_pg(asyncpg.exceptions.SerializationError), True),  # 40001
        (_pg(asyncpg.exceptions.DeadlockDetectedError), True),  # 40P01
        (_pg(asyncpg.exceptions.QueryCanceledError), True),  # 57014 statement_timeout
        (_pg(asyncpg.exceptions.AdminShutdownError), True),  # 57P01
        (_pg(asyncpg.exceptions.CannotConnectNowError), True),  # 57P03
        (_pg(asyncpg.exceptions.LockNotAvailableError), True),  # 55P03
        (_pg(asyncpg.exceptions.TooManyConnectionsError), True),  # 53300
        (asyncpg.exceptions.ConnectionDoesNotExistError("closed"), True),  # 08003
        (asyncpg.exceptions.InterfaceError("connection is closed"), True),
        (KafkaConnectionError(), True),
        (_pg(asyncpg.exceptions.CharacterNotInRepertoireError), False),  # 22021: NUL
        (_pg(asyncpg.exceptions.UntranslatableCharacterError), False),  # 22P05
        (_pg(asyncpg.exceptions.StringDataRightTruncationError), False),  # 22001
        (_pg(asyncpg.exceptions.NumericValueOutOfRangeError), False),  # 22003
        (_pg(asyncpg.exceptions.UniqueViolationError), False),  # 23505
        (_pg(asyncpg.exceptions.RaiseError), False),  # P0001: a trigger refused the row
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), False),
        (ValueError("bad"), False),
        (KeyError("x"), False),
        (OverflowError("date value out of range"), False),
        (MessageSizeTooLargeError(), False),
    ],
)
def test_transient_decision_table(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_wrapped_errors_are_judged_by_what_they_wrap() -> None:
    data = _pg(asyncpg.exceptions.CharacterNotInRepertoireError)
    conn = _pg(asyncpg.exceptions.QueryCanceledError)
    assert not is_transient(DBAPIError("INSERT", {}, data))
    assert is_transient(DBAPIError("INSERT", {}, conn))
    assert is_transient(OperationalError("SELECT 1", {}, Exception("server closed")))
    try:
        try:
            raise conn
        except asyncpg.PostgresError as inner:
            raise RuntimeError("wrapped by a handler") from inner
    except RuntimeError as outer:
        assert is_transient(outer)


class Boom(ValueError):
    """A deterministic failure caused by one record."""


class Flaky(ConnectionError):
    """A transient failure."""


class Sink:
    """Applies records (commits them) unless a poison record is among them."""

    def __init__(self, poison: set[int], flaky_calls: int = 0) -> None:
        self.poison = poison
        self.flaky_calls = flaky_calls
        self.committed: list[int] = []
        self.quarantined: list[int] = []
        self.calls = 0

    async def apply(self, records: Sequence[int]) -> None:
        self.calls += 1
        if self.calls <= self.flaky_calls:
            raise Flaky("database restarting")
        bad = self.poison.intersection(records)
        if bad:
            raise Boom(f"records {sorted(bad)} cannot be stored")
        self.committed.extend(records)

    async def quarantine(self, record: int, exc: BaseException) -> None:
        assert isinstance(exc, Boom)
        self.quarantined.append(record)
        self.committed.append(record)  # the offset moves past it


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=300),
    data=st.data(),
)
def test_isolate_quarantines_exactly_the_poison_and_keeps_order(
    n: int, data: st.DataObject
) -> None:
    records = list(range(n))
    poison = set(data.draw(st.lists(st.sampled_from(records), max_size=5)))
    sink = Sink(poison)
    quarantined = asyncio.run(isolate(records, sink.apply, sink.quarantine))
    assert quarantined == len(poison)
    assert sorted(sink.quarantined) == sorted(poison)
    # Everything ends committed exactly once and in offset order: no gap, no re-apply.
    assert sink.committed == records
    # Bisection stays cheap: a clean batch is one call; each poison costs ~2 log2(n).
    if not poison:
        assert sink.calls == 1


def test_transient_failure_is_raised_not_bisected() -> None:
    sink = Sink(poison=set(), flaky_calls=1)
    with pytest.raises(Flaky):
        asyncio.run(isolate(list(range(10)), sink.apply, sink.quarantine))
    assert sink.committed == [] and sink.quarantined == []


def test_a_single_record_gets_a_second_chance() -> None:
    class OnceBroken(Sink):
        async def apply(self, records: Sequence[int]) -> None:
            self.calls += 1
            if self.calls == 1:
                raise Boom("one-off")
            self.committed.extend(records)

    sink = OnceBroken(poison=set())
    assert asyncio.run(isolate([7], sink.apply, sink.quarantine)) == 0
    assert sink.committed == [7] and sink.quarantined == []
