"""Windows (SPEC §3 "Windows"): Nd, qtd and quarters over organisation-local dates."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Final, Literal, TypeAlias

MAX_WINDOW_DAYS: Final = 400
WindowKind: TypeAlias = Literal["days", "qtd", "quarter"]


class WindowError(ValueError):
    """A window or quarter name that does not follow the SPEC grammar."""


@dataclass(frozen=True)
class Window:
    """An inclusive range of local dates; ``name`` is the canonical spelling."""

    name: str
    start: date
    end: date
    kind: WindowKind

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end


_DAYS_RE: Final = re.compile(r"([0-9]+)d", re.IGNORECASE)
_QUARTER_RE: Final = re.compile(r"([0-9]{4})Q([1-4])", re.IGNORECASE)


def quarter_bounds(year: int, q: int) -> tuple[date, date]:
    """First and last date of calendar quarter ``q`` of ``year``."""
    if not 1 <= q <= 4:
        raise WindowError(f"quarter must be 1..4, got {q}")
    if not 1 <= year <= 9999:
        raise WindowError(f"quarter year must be 1..9999, got {year}")
    start = date(year, 3 * q - 2, 1)
    # The day before the next quarter's first day handles 30/31-day month ends.
    end = (
        date(year + 1, 1, 1) - timedelta(days=1)
        if q == 4
        else date(year, 3 * q + 1, 1) - timedelta(days=1)
    )
    return start, end


def parse_quarter(s: str) -> tuple[int, int]:
    """``"2026Q3"`` -> ``(2026, 3)``."""
    match = _QUARTER_RE.fullmatch(s.strip()) if isinstance(s, str) else None
    if match is None or int(match.group(1)) < 1:
        raise WindowError(f"quarter must be YYYYQn (e.g. 2026Q3), got {s!r}")
    return int(match.group(1)), int(match.group(2))


def quarter_of(day: date) -> tuple[int, int]:
    """The calendar quarter containing ``day``."""
    return day.year, (day.month - 1) // 3 + 1


def parse_window(name: str, as_of: date) -> Window:
    """Resolve a window name (``Nd``, ``qtd``, ``YYYYQn``) against the local date ``as_of``."""
    error = f"window must be Nd (1..{MAX_WINDOW_DAYS}), qtd or YYYYQn, got {name!r}"
    if not isinstance(name, str):
        raise WindowError(error)
    text = name.strip()
    if text.lower() == "qtd":
        start, _ = quarter_bounds(*quarter_of(as_of))
        return Window("qtd", start, as_of, "qtd")
    days = _DAYS_RE.fullmatch(text)
    if days is not None:
        n = int(days.group(1))
        # Leading zeros ("07d") are rejected so every window has one canonical name.
        if not 1 <= n <= MAX_WINDOW_DAYS or days.group(1).startswith("0"):
            raise WindowError(error)
        try:
            start = as_of - timedelta(days=n - 1)
        except OverflowError:
            raise WindowError(f"window {text!r} reaches before {date.min}") from None
        return Window(f"{n}d", start, as_of, "days")
    quarter = _QUARTER_RE.fullmatch(text)
    if quarter is not None and int(quarter.group(1)) >= 1:
        year, q = int(quarter.group(1)), int(quarter.group(2))
        start, end = quarter_bounds(year, q)
        return Window(f"{year:04d}Q{q}", start, end, "quarter")
    raise WindowError(error)


def local_day(ts: datetime, tz: tzinfo) -> date:
    """The organisation-local date of an aware timestamp; naive timestamps are ambiguous."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"timestamp must carry a UTC offset, got naive {ts.isoformat()}")
    return ts.astimezone(tz).date()
