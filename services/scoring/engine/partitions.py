"""Generations of the dedup table: when to open the next one, which ones retention may drop."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

# processed_events is range-partitioned on a generation number, one partition per
# generation [g, g + 1); generation 0 (no open generation) lives in the default partition.
PREFIX = "processed_events_g"
_NAME = re.compile(r"^processed_events_g(\d{6,})$")
# A generation stays open for retention / GENERATIONS days, so a claim looks its ids up in
# about GENERATIONS closed partitions, and an id is remembered for between the retention and
# (1 + 1/GENERATIONS) times it. More generations cost every claim one index probe per id each.
GENERATIONS = 2


def partition_name(generation: int) -> str:
    return f"{PREFIX}{generation:06d}"


def partition_generation(name: str) -> int | None:
    """Generation of a partition from its name; None for any other table."""
    m = _NAME.match(name)
    return int(m.group(1)) if m else None


def open_days(retention_days: int) -> int | None:
    """How long a generation takes claims; None (forever) when ids are kept forever."""
    if retention_days <= 0:
        return None
    return max(1, math.ceil(retention_days / GENERATIONS))


@dataclass(frozen=True)
class Generation:
    """A partition's life: it takes claims from opened_at until closed_at (None while open)."""

    number: int
    opened_at: dt.datetime
    closed_at: dt.datetime | None


def current(generations: list[Generation]) -> Generation | None:
    return next((g for g in generations if g.closed_at is None), None)


def due_switch(
    partitions: list[int], generations: list[Generation], now: dt.datetime, retention_days: int
) -> int | None:
    """The generation to open now, or None while the open one may keep taking claims."""
    cur = current(generations)
    if cur is None:
        # Above every number in use, so no id already stored is in the new generation.
        return max([0, *partitions, *(g.number for g in generations)]) + 1
    days = open_days(retention_days)
    if days is None or now < cur.opened_at + dt.timedelta(days=days):
        return None
    return cur.number + 1


def droppable(
    partitions: list[int], generations: list[Generation], now: dt.datetime, retention_days: int
) -> list[int]:
    """Partitions whose every id was first seen before the horizon (now - retention).

    A closed generation's claims all committed before it was closed (the switch waits for
    them under the exclusive claim lock), so closed_at bounds their first_seen_at. A
    partition never opened and below the open generation holds no ids. The open generation
    and those created ahead of it are never dropped.
    """
    if retention_days <= 0:
        return []
    horizon = now - dt.timedelta(days=retention_days)
    known = {g.number: g for g in generations}
    cur = current(generations)
    out: list[int] = []
    for number in sorted(partitions):
        gen = known.get(number)
        if gen is None:
            if cur is not None and number < cur.number:
                out.append(number)
        elif gen.closed_at is not None and gen.closed_at <= horizon:
            out.append(number)
    return out


# -- the explain ledger (kpi_facts): one partition per month of `day` ----------------------

LEDGER_PREFIX = "kpi_facts_m"
_LEDGER_NAME = re.compile(r"^kpi_facts_m(\d{4})(\d{2})$")
# Months created ahead of today, so facts of the coming days never wait for a partition.
LEDGER_AHEAD_MONTHS = 2


def month_start(day: dt.date, add: int = 0) -> dt.date:
    """First day of the month ``add`` months after the one holding ``day``."""
    index = day.year * 12 + day.month - 1 + add
    return dt.date(index // 12, index % 12 + 1, 1)


def ledger_partition_name(month: dt.date) -> str:
    return f"{LEDGER_PREFIX}{month:%Y%m}"


def ledger_partition_month(name: str) -> dt.date | None:
    m = _LEDGER_NAME.match(name)
    return dt.date(int(m.group(1)), int(m.group(2)), 1) if m else None


def ledger_kept_from(today: dt.date, retention_days: int) -> dt.date | None:
    """First day whose facts are kept: the month holding ``today - retention`` (None: all)."""
    if retention_days <= 0:
        return None
    return month_start(today - dt.timedelta(days=retention_days))


def ledger_droppable(months: list[dt.date], kept_from: dt.date | None) -> list[dt.date]:
    """Month partitions entirely before ``kept_from``."""
    if kept_from is None:
        return []
    return [m for m in sorted(months) if month_start(m, 1) <= kept_from]
