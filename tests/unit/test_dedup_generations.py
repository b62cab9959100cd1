"""The dedup generations' calendar: when to switch, which partitions retention may drop."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from services.scoring.engine.partitions import (
    Generation,
    current,
    droppable,
    due_switch,
    open_days,
    partition_generation,
    partition_name,
)

T0 = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)


def test_generation_width_and_names() -> None:
    assert open_days(0) is None and open_days(1) == 1 and open_days(90) == 45
    assert open_days(7) == 4
    assert partition_name(42) == "processed_events_g000042"
    assert partition_generation("processed_events_g000042") == 42
    assert partition_generation("processed_events_default") is None


def test_switch_when_the_open_generation_has_taken_claims_for_its_width() -> None:
    gens = [Generation(3, T0, None)]
    assert due_switch([3, 4], gens, T0 + dt.timedelta(days=44, hours=23), 90) is None
    assert due_switch([3, 4], gens, T0 + dt.timedelta(days=45), 90) == 4
    assert due_switch([3, 4], gens, T0 + dt.timedelta(days=4000), 0) is None  # forever
    # None open: above every number in use, partitions included.
    assert due_switch([7], [Generation(3, T0, T0)], T0, 90) == 8


HISTORIES = st.lists(st.integers(1, 60), min_size=1, max_size=8)


@given(lengths=HISTORIES, age=st.integers(0, 400), days=st.integers(0, 120))
def test_droppable_only_closed_generations_past_the_horizon(
    lengths: list[int], age: int, days: int
) -> None:
    """Reference: generation n (opened, then closed after lengths[n] days) holds ids first
    seen before its closing; it may go exactly when that closing is older than the horizon."""
    gens: list[Generation] = []
    at = T0
    for number, length in enumerate(lengths, start=1):
        closed = at + dt.timedelta(days=length)
        gens.append(Generation(number, at, closed))
        at = closed
    gens.append(Generation(len(lengths) + 1, at, None))
    now = at + dt.timedelta(days=age)
    numbers = [g.number for g in gens] + [len(gens) + 1]  # one created ahead
    dropped = droppable(numbers, gens, now, days)
    open_gen = current(gens)
    assert open_gen is not None and open_gen.number not in dropped
    assert len(gens) + 1 not in dropped
    for g in gens[:-1]:
        expired = (
            days > 0 and g.closed_at is not None and g.closed_at <= now - dt.timedelta(days=days)
        )
        assert (g.number in dropped) == expired
