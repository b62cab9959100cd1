"""Pure KPI domain: catalogue, lines, windows, grading and order-independent contributions."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from operator import attrgetter
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias

from shared.events import (
    Event,
    RecordAudited,
    SurveyCsat,
    SurveyNps,
    SurveyPeerReview,
    SurveyTraining,
    TicketAssigned,
    TicketClosed,
    TicketCreated,
    TicketFirstResponse,
    TicketFollowup,
    TicketReopened,
)

# ---------------------------------------------------------------------------
# 1. KPI catalogue and lines (SPEC §1)
# ---------------------------------------------------------------------------

CUSTOMER_SATISFACTION: Final = "customer_satisfaction"
RESOLUTION_RATE: Final = "resolution_rate"
AVG_RESPONSE_TIME_HOURS: Final = "avg_response_time_hours"
RECORD_ACCURACY: Final = "record_accuracy"
FOLLOWUP_RATE: Final = "followup_rate"
COLLABORATION_SCORE: Final = "collaboration_score"
TRAINING_SESSIONS: Final = "training_sessions"
NPS: Final = "nps"

KPI_KEYS: Final[tuple[str, ...]] = (
    CUSTOMER_SATISFACTION,
    RESOLUTION_RATE,
    AVG_RESPONSE_TIME_HOURS,
    RECORD_ACCURACY,
    FOLLOWUP_RATE,
    COLLABORATION_SCORE,
    TRAINING_SESSIONS,
    NPS,
)
# nps is informational (SPEC §1): it never gets a grade, so it is not appraised.
GRADED_KEYS: Final[tuple[str, ...]] = tuple(k for k in KPI_KEYS if k != NPS)
# Ratio KPIs have values in [0, 1]; their lines must be too (catches "85" meant as 85 %).
RATIO_KEYS: Final[frozenset[str]] = frozenset(
    {CUSTOMER_SATISFACTION, RESOLUTION_RATE, RECORD_ACCURACY, FOLLOWUP_RATE, COLLABORATION_SCORE}
)

Grade: TypeAlias = Literal["excellent", "qualified", "unqualified", "insufficient_data"]
GRADES: Final[tuple[str, ...]] = ("excellent", "qualified", "unqualified", "insufficient_data")

# Line comparisons tolerate float noise so that e.g. 17/20 is exactly "at" 0.85.
EPSILON: Final = 1e-9


@dataclass(frozen=True)
class KpiLine:
    """Thresholds of one KPI; ``None`` means the line does not exist."""

    qualified: float | None
    excellent: float | None
    min_samples: int | None
    higher_is_better: bool


DEFAULT_LINES: Final[Mapping[str, KpiLine]] = MappingProxyType(
    {
        CUSTOMER_SATISFACTION: KpiLine(0.85, 0.90, 10, True),
        RESOLUTION_RATE: KpiLine(0.90, 0.95, 10, True),
        AVG_RESPONSE_TIME_HOURS: KpiLine(24.0, 12.0, 10, False),
        RECORD_ACCURACY: KpiLine(0.95, 0.98, 5, True),
        FOLLOWUP_RATE: KpiLine(0.80, 0.90, 10, True),
        COLLABORATION_SCORE: KpiLine(0.80, 0.90, 3, True),
        TRAINING_SESSIONS: KpiLine(1.0, None, None, True),
        NPS: KpiLine(None, None, None, True),
    }
)

_LINE_FIELDS: Final = ("qualified", "excellent", "min_samples")


def _threshold(key: str, name: str, raw: object) -> float | None:
    if raw is None:
        return None
    # bool is an int subclass; a JSON true/false here is always a config mistake.
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(f"KPI line {key}.{name} must be a number or null, got {raw!r}")
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"KPI line {key}.{name} must be finite, got {raw!r}")
    if key in RATIO_KEYS and not 0.0 <= value <= 1.0:
        raise ValueError(f"KPI line {key}.{name} is a ratio and must be in 0..1, got {raw!r}")
    if value < 0.0:
        raise ValueError(f"KPI line {key}.{name} must be >= 0, got {raw!r}")
    return value


def _min_samples(key: str, raw: object) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)  # JSON configs sometimes carry 10.0 for 10
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise ValueError(f"KPI line {key}.min_samples must be an integer >= 0 or null, got {raw!r}")
    return raw


def lines_with_overrides(
    overrides: Mapping[str, Mapping[str, float | int | None]],
) -> dict[str, KpiLine]:
    """Default lines with per-organisation overrides applied; ValueError names key and field."""
    lines = dict(DEFAULT_LINES)
    for key, fields in overrides.items():
        if key not in DEFAULT_LINES:
            raise ValueError(
                f"unknown KPI key {key!r} in line overrides (known: {', '.join(KPI_KEYS)})"
            )
        if not isinstance(fields, Mapping):
            raise ValueError(f"KPI line overrides for {key} must be an object, got {fields!r}")
        base = lines[key]
        values: dict[str, Any] = {
            "qualified": base.qualified,
            "excellent": base.excellent,
            "min_samples": base.min_samples,
        }
        for name, raw in fields.items():
            if name not in _LINE_FIELDS:
                raise ValueError(
                    f"unknown field {key}.{name} in line overrides "
                    f"(known: {', '.join(_LINE_FIELDS)})"
                )
            if name == "min_samples":
                values[name] = _min_samples(key, raw)
            else:
                values[name] = _threshold(key, name, raw)
        qualified, excellent, min_samples = (
            values["qualified"],
            values["excellent"],
            values["min_samples"],
        )
        # The spec gives nps no lines and training no excellent tier or sample minimum;
        # accepting such overrides would silently do nothing, so reject them loudly.
        if key == NPS and (qualified, excellent, min_samples) != (None, None, None):
            raise ValueError("KPI line nps is informational and takes no lines or min_samples")
        if key == TRAINING_SESSIONS and (excellent is not None or min_samples is not None):
            field_name = "excellent" if excellent is not None else "min_samples"
            raise ValueError(
                f"KPI line training_sessions.{field_name} is not supported (must be null)"
            )
        if key != NPS and qualified is None:
            raise ValueError(f"KPI line {key}.qualified is required for a graded KPI")
        if qualified is not None and excellent is not None:
            worse = excellent < qualified if base.higher_is_better else excellent > qualified
            if worse:
                raise ValueError(
                    f"KPI line {key}.excellent ({excellent:g}) must not be worse than "
                    f"qualified ({qualified:g})"
                )
        lines[key] = KpiLine(qualified, excellent, min_samples, base.higher_is_better)
    return lines


# ---------------------------------------------------------------------------
# 2. Windows (SPEC §3 "Windows")
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# 3. Grading
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KpiValue:
    """One KPI over one window, shaped like the SPEC §4 ``kpis`` entries."""

    value: float | None
    numerator: float | None
    denominator: int | None
    grade: Grade | None
    qualified: float | None
    excellent: float | None
    min_samples: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "numerator": self.numerator,
            "denominator": self.denominator,
            "grade": self.grade,
            "qualified": self.qualified,
            "excellent": self.excellent,
            "min_samples": self.min_samples,
        }


def _as_count(num: float) -> float:
    # Counts arrive as floats from summed buckets; show 17 rather than 17.0 without rounding.
    return int(num) if float(num).is_integer() else num


def _meets(value: float, line: float, higher_is_better: bool) -> bool:
    return value >= line - EPSILON if higher_is_better else value <= line + EPSILON


def _grade(value: float, line: KpiLine) -> Grade:
    if line.excellent is not None and _meets(value, line.excellent, line.higher_is_better):
        return "excellent"
    if line.qualified is None or _meets(value, line.qualified, line.higher_is_better):
        return "qualified"
    return "unqualified"


def evaluate(key: str, num: float, den: int, line: KpiLine, window: Window) -> KpiValue:
    """Value and grade of ``key`` from its window sums (numerator, denominator)."""
    if key not in DEFAULT_LINES:
        raise ValueError(f"unknown KPI key {key!r}")
    if key == TRAINING_SESSIONS:
        # value = numerator = number of sessions; there is no denominator (SPEC §4).
        count = _as_count(num)
        graded = window.kind in ("qtd", "quarter")
        return KpiValue(
            value=count,
            numerator=count,
            denominator=None,
            grade=_grade(float(num), line) if graded else None,
            qualified=line.qualified,
            excellent=line.excellent,
            min_samples=line.min_samples,
        )
    numerator = num if key == AVG_RESPONSE_TIME_HOURS else _as_count(num)
    if den <= 0:
        value: float | None = None
    elif key == NPS:
        value = num / den * 100
    else:
        value = num / den
    grade: Grade | None
    if key == NPS:
        grade = None
    elif value is None or den < (line.min_samples or 0):
        grade = "insufficient_data"
    else:
        grade = _grade(value, line)
    return KpiValue(
        value=value,
        numerator=numerator,
        denominator=den,
        grade=grade,
        qualified=line.qualified,
        excellent=line.excellent,
        min_samples=line.min_samples,
    )


def evaluate_all(
    sums: Mapping[str, tuple[float, int]],
    window: Window,
    lines: Mapping[str, KpiLine] = DEFAULT_LINES,
) -> dict[str, KpiValue]:
    """Every KPI of SPEC §1 in table order; a key missing from ``sums`` counts as 0/0."""
    return {
        key: evaluate(key, *sums.get(key, (0.0, 0)), lines.get(key, DEFAULT_LINES[key]), window)
        for key in KPI_KEYS
    }


# ---------------------------------------------------------------------------
# 4./5./6. Contributions: (specialist_id, local date, metric) -> (numerator, denominator)
# ---------------------------------------------------------------------------

ContributionKey: TypeAlias = tuple[str, date, str]
Contributions: TypeAlias = dict[ContributionKey, tuple[float, int]]

NEGATIVE_RESPONSE_TIME: Final = "negative_response_time"
# Training sessions are stored as v1 documents; tickets as v2 (compact) and still read v1.
_STATE_VERSION: Final = 1
TICKET_STATE_VERSION: Final = 2


def _add(out: Contributions, key: ContributionKey, num: float, den: int) -> None:
    old_num, old_den = out.get(key, (0.0, 0))
    out[key] = (old_num + num, old_den + den)


def merge_contributions(
    into: Contributions, delta: Mapping[ContributionKey, tuple[float, int]]
) -> None:
    """Add ``delta`` into ``into`` in place, dropping entries that cancel to zero."""
    for key, (num, den) in delta.items():
        _add(into, key, num, den)
        new_num, new_den = into[key]
        if new_den == 0 and abs(new_num) <= EPSILON:
            del into[key]


def diff_contributions(
    old: Mapping[ContributionKey, tuple[float, int]],
    new: Mapping[ContributionKey, tuple[float, int]],
) -> Contributions:
    """``new - old`` per key; keys whose numerator and denominator both stay equal are dropped."""
    out: Contributions = {}
    # A key missing on one side counts as (0.0, 0); the arithmetic is kept as written so
    # the results are the same floats as ``new - old`` with that default.
    for key, (new_num, new_den) in new.items():
        prior = old.get(key)
        old_num, old_den = (0.0, 0) if prior is None else prior
        if new_num != old_num or new_den != old_den:
            out[key] = (new_num - old_num, new_den - old_den)
    for key, (old_num, old_den) in old.items():
        if key not in new and (old_num != 0.0 or old_den != 0):
            out[key] = (0.0 - old_num, 0 - old_den)
    return out


def csat_point(score: int) -> float:
    """CSAT numerator of one survey: satisfied = score >= 4."""
    return 1.0 if score >= 4 else 0.0


def nps_point(score: int) -> float:
    """NPS numerator of one response: promoter 9-10 = +1, detractor 0-6 = -1, passive = 0."""
    if score >= 9:
        return 1.0
    return -1.0 if score <= 6 else 0.0


def _ts(value: datetime) -> str:
    return value.isoformat()


_MINUTE: Final = timedelta(minutes=1)
# Offsets seen to be whole minutes (few distinct ones exist); UTC is checked by identity.
_MINUTE_OFFSETS: set[tzinfo] = set()


def _ts_for_orjson(value: datetime) -> datetime | str:
    """``value`` where orjson.dumps renders it exactly as ``_ts`` would, else ``_ts(value)``.

    orjson formats an aware datetime like isoformat() in C, several times cheaper, but
    truncates sub-minute UTC offsets (which event timestamps never have).
    """
    tz = value.tzinfo
    if type(value) is not datetime:
        return value.isoformat()
    if tz is UTC or tz in _MINUTE_OFFSETS:
        return value
    offset = value.utcoffset()
    if offset is None or offset % _MINUTE or type(tz) is not timezone:
        return value.isoformat()
    _MINUTE_OFFSETS.add(tz)
    return value


def _parse_ts(raw: object) -> datetime:
    if not isinstance(raw, str):
        raise ValueError(f"state timestamp must be a string, got {raw!r}")
    parsed = datetime.fromisoformat(raw)
    if parsed.tzinfo is None:
        raise ValueError(f"state timestamp must carry an offset, got {raw!r}")
    return parsed


def _opt_str(raw: object) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    raise ValueError(f"expected a string or null in state, got {raw!r}")


def _str(raw: object) -> str:
    if isinstance(raw, str):
        return raw
    raise ValueError(f"expected a string in state, got {raw!r}")


def _rows(data: Mapping[str, Any], name: str) -> list[list[Any]]:
    rows = data.get(name, [])
    if not isinstance(rows, list) or not all(map(_is_list, rows)):
        raise ValueError(f"state field {name!r} must be a list of arrays")
    return rows


_is_list: Final = list.__instancecheck__


def _marks(data: Mapping[str, Any], name: str) -> list[Mark]:
    """``[Mark.from_row(r) for r in _rows(data, name)]``, checks inlined for valid rows."""
    out: list[Mark] = []
    for row in _rows(data, name):
        if len(row) >= 3:
            event_id, at, who = row[0], row[1], row[2]
            if type(event_id) is str and type(at) is str and (who is None or type(who) is str):
                parsed = datetime.fromisoformat(at)
                if parsed.tzinfo is not None:
                    out.append(Mark(event_id, parsed, who))
                    continue
        out.append(Mark.from_row(row))  # raises the error the row deserves
    return out


def _check_version(data: Mapping[str, Any]) -> None:
    if data.get("v") != _STATE_VERSION:
        raise ValueError(f"unsupported state version {data.get('v')!r} (expected {_STATE_VERSION})")


@dataclass(frozen=True)
class Mark:
    """A ticket event reduced to what KPIs need: when, and for whom."""

    event_id: str
    occurred_at: datetime
    specialist_id: str | None = None

    @property
    def order(self) -> tuple[datetime, str]:
        return (self.occurred_at, self.event_id)

    def to_row(self) -> list[Any]:
        return [self.event_id, _ts(self.occurred_at), self.specialist_id]

    @classmethod
    def from_row(cls, row: list[Any]) -> Mark:
        return cls(_str(row[0]), _parse_ts(row[1]), _opt_str(row[2]))


@dataclass(frozen=True)
class Closure:
    """One ``ticket.closed`` event."""

    event_id: str
    occurred_at: datetime
    specialist_id: str
    resolved: bool

    @property
    def order(self) -> tuple[datetime, str]:
        return (self.occurred_at, self.event_id)

    def to_row(self) -> list[Any]:
        return [self.event_id, _ts(self.occurred_at), self.specialist_id, self.resolved]

    @classmethod
    def from_row(cls, row: list[Any]) -> Closure:
        if not isinstance(row[3], bool):
            raise ValueError(f"closure resolved flag must be a bool, got {row[3]!r}")
        return cls(_str(row[0]), _parse_ts(row[1]), _str(row[2]), row[3])


SurveyKind: TypeAlias = Literal["csat", "nps"]


@dataclass(frozen=True)
class TicketSurvey:
    """A csat/nps survey that names only its ticket; its specialist comes from the ticket."""

    event_id: str
    kind: SurveyKind
    occurred_at: datetime
    score: int

    def to_row(self) -> list[Any]:
        return [self.event_id, self.kind, _ts(self.occurred_at), self.score]

    @classmethod
    def from_row(cls, row: list[Any]) -> TicketSurvey:
        kind, score = row[1], row[3]
        if kind not in ("csat", "nps") or isinstance(score, bool) or not isinstance(score, int):
            raise ValueError(f"bad survey row in state: {row!r}")
        return cls(_str(row[0]), kind, _parse_ts(row[2]), score)


# (occurred_at, event_id): the ``order`` of marks, closures, surveys and feedback.
_BY_ORDER: Final = attrgetter("occurred_at", "event_id")

# Exact-type lookups: isinstance on pydantic models goes through ABCMeta and showed up in
# profiles at ~2 calls per event; subclasses (none exist today) still take the slow path.
_TICKET_TYPES: Final[frozenset[type]] = frozenset(
    {
        TicketCreated,
        TicketAssigned,
        TicketFirstResponse,
        TicketClosed,
        TicketReopened,
        TicketFollowup,
    }
)
_TICKET_SURVEY_TYPES: Final[frozenset[type]] = frozenset({SurveyCsat, SurveyNps})
_APPLY_ORDER: Final[tuple[type, ...]] = (
    TicketCreated,
    TicketAssigned,
    TicketFirstResponse,
    TicketClosed,
    TicketReopened,
    TicketFollowup,
    SurveyCsat,
    SurveyNps,
)
_OTHER_TYPES: Final[frozenset[type]] = frozenset({RecordAudited, SurveyPeerReview, SurveyTraining})


def routes_to_ticket(event: Event) -> str | None:
    """The ticket whose state ``event`` updates, or None when it contributes on its own."""
    kind = type(event)
    if kind in _TICKET_TYPES:
        return event.ticket_id  # type: ignore[union-attr]
    if kind in _TICKET_SURVEY_TYPES:
        return event.ticket_id if event.specialist_id is None else None  # type: ignore[union-attr]
    if kind in _OTHER_TYPES:
        return None
    if isinstance(
        event,
        TicketCreated
        | TicketAssigned
        | TicketFirstResponse
        | TicketClosed
        | TicketReopened
        | TicketFollowup,
    ):
        return event.ticket_id
    if isinstance(event, SurveyCsat | SurveyNps) and event.specialist_id is None:
        return event.ticket_id
    return None


def routes_to_session(event: Event) -> str | None:
    """The training session whose state ``event`` updates, if any."""
    return event.session_id if isinstance(event, SurveyTraining) else None


@dataclass
class TicketState:
    """Everything a ticket's events say that KPIs need; a function of the event set only."""

    ticket_id: str
    created: list[Mark] = field(default_factory=list)
    assigned: list[Mark] = field(default_factory=list)
    # Only the earliest first response counts, so later ones are folded into ``absorbed``.
    first_response: Mark | None = None
    closures: list[Closure] = field(default_factory=list)
    reopens: list[Mark] = field(default_factory=list)
    followed_up: bool = False
    surveys: list[TicketSurvey] = field(default_factory=list)
    # Ids of events whose effect is already folded into an aggregate (first_response,
    # followed_up): kept so a redelivery is still recognised as a duplicate.
    absorbed: set[str] = field(default_factory=set)

    def event_ids(self) -> set[str]:
        ids = set(self.absorbed)
        ids.update(m.event_id for m in self.created)
        ids.update(m.event_id for m in self.assigned)
        ids.update(c.event_id for c in self.closures)
        ids.update(m.event_id for m in self.reopens)
        ids.update(s.event_id for s in self.surveys)
        if self.first_response is not None:
            ids.add(self.first_response.event_id)
        return ids

    def _knows(self, event_id: str) -> bool:
        """``event_id in self.event_ids()`` without building the set (hot path of apply)."""
        if event_id in self.absorbed:
            return True
        if self.first_response is not None and self.first_response.event_id == event_id:
            return True
        for rows in (self.created, self.assigned, self.closures, self.reopens, self.surveys):
            for row in rows:
                if row.event_id == event_id:
                    return True
        return False

    def apply(self, event: Event) -> bool:
        """Fold ``event`` in; False (and no change) when its event_id is already known."""
        ticket_id = routes_to_ticket(event)
        if ticket_id != self.ticket_id:
            raise ValueError(
                f"event {event.event_id} ({event.type}) does not update ticket {self.ticket_id}"
            )
        return self.apply_routed(event)

    def apply_routed(self, event: Event) -> bool:
        """:meth:`apply` for an event the caller routed here with :func:`routes_to_ticket`."""
        if self._knows(event.event_id):
            return False
        at = event.occurred_at
        kind: type = type(event)
        if kind not in _TICKET_TYPES and kind not in _TICKET_SURVEY_TYPES:
            kind = next((k for k in _APPLY_ORDER if isinstance(event, k)), kind)
        # Narrowed by the exact-type dispatch (mypy cannot see through ``kind is X``).
        e: Any = event
        if kind is TicketCreated:
            self.created.append(Mark(e.event_id, at, e.specialist_id))
        elif kind is TicketAssigned:
            self.assigned.append(Mark(e.event_id, at, e.specialist_id))
        elif kind is TicketFirstResponse:
            mark = Mark(e.event_id, at, e.specialist_id)
            current = self.first_response
            if current is None or mark.order < current.order:
                if current is not None:
                    self.absorbed.add(current.event_id)
                self.first_response = mark
            else:
                self.absorbed.add(mark.event_id)
        elif kind is TicketClosed:
            self.closures.append(Closure(e.event_id, at, e.specialist_id, e.resolved))
        elif kind is TicketReopened:
            self.reopens.append(Mark(e.event_id, at))
        elif kind is TicketFollowup:
            self.followed_up = True
            self.absorbed.add(e.event_id)
        elif kind is SurveyCsat:
            self.surveys.append(TicketSurvey(e.event_id, "csat", at, e.score))
        elif kind is SurveyNps:
            self.surveys.append(TicketSurvey(e.event_id, "nps", at, e.score))
        else:  # pragma: no cover - routes_to_ticket already limits the types
            raise ValueError(f"event type {event.type} does not update a ticket")
        return True

    def to_json(self) -> dict[str, Any]:
        """Compact JSON-safe form (v2, see :func:`_ticket_v2`); equal states serialise equally."""
        return self._doc(_ts)

    def to_storable(self) -> dict[str, Any]:
        """:meth:`to_json` with timestamps that ``orjson.dumps`` renders to the same bytes."""
        return self._doc(_ts_for_orjson)

    def _doc(self, ts: Callable[[datetime], Any]) -> dict[str, Any]:
        # Empty, false and null fields are left out: most tickets have no assignment,
        # reopen, survey or absorbed id, and every stored byte is written again per update.
        doc: dict[str, Any] = {"v": TICKET_STATE_VERSION, "t": self.ticket_id}
        if self.created:
            doc["c"] = _mark_rows(self.created, ts)
        if self.assigned:
            doc["a"] = _mark_rows(self.assigned, ts)
        first = self.first_response
        if first is not None:
            at = ts(first.occurred_at)
            who = first.specialist_id
            doc["f"] = [first.event_id, at] if who is None else [first.event_id, at, who]
        closures = self.closures
        if closures:
            if len(closures) > 1:
                closures = sorted(closures, key=_BY_ORDER)
            doc["x"] = [
                [c.event_id, ts(c.occurred_at), c.specialist_id, c.resolved] for c in closures
            ]
        if self.reopens:
            doc["o"] = _mark_rows(self.reopens, ts)
        if self.followed_up:
            doc["u"] = True
        surveys = self.surveys
        if surveys:
            if len(surveys) > 1:
                surveys = sorted(surveys, key=_BY_ORDER)
            doc["s"] = [[s.event_id, s.kind, ts(s.occurred_at), s.score] for s in surveys]
        if self.absorbed:
            doc["b"] = sorted(self.absorbed)
        return doc

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TicketState:
        """Inverse of :meth:`to_json`, also reading v1 documents; ValueError when malformed."""
        try:
            version = data.get("v")
            if version == TICKET_STATE_VERSION:
                return _ticket_v2(cls, data)
            if version == 1:
                return _ticket_v1(cls, data)
            raise ValueError(
                f"unsupported ticket state version {version!r} (expected 1 or "
                f"{TICKET_STATE_VERSION})"
            )
        except (IndexError, TypeError) as exc:
            raise ValueError(f"malformed ticket state: {exc}") from None

    # -- derived facts, all functions of the event set ------------------------------------

    def counted_closure(self) -> Closure | None:
        """The latest closure when no reopen happened strictly after it."""
        closures = self.closures
        if not closures:
            return None
        # Computed for every ticket before and after each batch: skip max() and the
        # generator in the common case of one closure and no reopen.
        latest = closures[0] if len(closures) == 1 else max(closures, key=_BY_ORDER)
        if self.reopens:
            at = latest.occurred_at
            for reopen in self.reopens:
                if reopen.occurred_at > at:
                    return None
        return latest

    def response_hours(self) -> float | None:
        """First response minus earliest creation, in hours (may be negative); None if unknown."""
        created = self.created
        if self.first_response is None or not created:
            return None
        delta = self.first_response.occurred_at - _first_created(created)
        return delta.total_seconds() / 3600.0

    def survey_specialist(self, at: datetime) -> str | None:
        """Who a ticket-only survey taken at ``at`` rates (SPEC §3); None while unknown."""
        # Loops rather than lists + max(key=...): this runs per survey on every recompute.
        # Strict comparisons keep the first of equal candidates, as max()/min() do.
        closed: Closure | None = None
        for c in self.closures:
            if c.occurred_at <= at and (
                closed is None
                or (c.occurred_at, c.event_id) > (closed.occurred_at, closed.event_id)
            ):
                closed = c
        if closed is not None:
            return closed.specialist_id
        # At equal instants an assignment supersedes the creation's assignee, hence the rank.
        latest: tuple[datetime, int, str] | None = None  # among owners from before ``at``
        earliest: tuple[datetime, int, str] | None = None  # among all owners
        chosen = chosen_early = None
        for rank_of, marks in ((0, self.created), (1, self.assigned)):
            for m in marks:
                who = m.specialist_id
                if who is None:
                    continue
                rank = (m.occurred_at, rank_of, m.event_id)
                if m.occurred_at <= at:
                    if latest is None or rank > latest:
                        latest, chosen = rank, who
                elif earliest is None or rank < earliest:
                    earliest, chosen_early = rank, who
        # With no owner at or before ``at``, the earliest later one is the earliest of all.
        return chosen if latest is not None else chosen_early


def _first_created(created: list[Mark]) -> datetime:
    """``min(m.occurred_at for m in created)`` (first of equal instants), without a generator."""
    first = created[0].occurred_at
    for m in created:
        if m.occurred_at < first:
            first = m.occurred_at
    return first


def _mark_rows(rows: list[Mark], ts: Callable[[datetime], Any]) -> list[list[Any]]:
    if len(rows) > 1:
        rows = sorted(rows, key=_BY_ORDER)
    # A mark without specialist (every reopen, some creations) is stored without the null.
    return [
        [m.event_id, ts(m.occurred_at)]
        if m.specialist_id is None
        else [m.event_id, ts(m.occurred_at), m.specialist_id]
        for m in rows
    ]


def _ticket_v1(cls: type[TicketState], data: Mapping[str, Any]) -> TicketState:
    """A ticket state as the first release stored it (long keys, every field present)."""
    first = data.get("first_response")
    if first is not None and not isinstance(first, list):
        raise ValueError("state field 'first_response' must be an array or null")
    followed_up = data.get("followed_up", False)
    if not isinstance(followed_up, bool):
        raise ValueError("state field 'followed_up' must be a bool")
    absorbed = data.get("absorbed", [])
    if not isinstance(absorbed, list):
        raise ValueError("state field 'absorbed' must be a list")
    return cls(
        ticket_id=_str(data.get("ticket_id")),
        created=_marks(data, "created"),
        assigned=_marks(data, "assigned"),
        first_response=None if first is None else Mark.from_row(first),
        closures=[Closure.from_row(r) for r in _rows(data, "closed")],
        reopens=_marks(data, "reopened"),
        followed_up=followed_up,
        surveys=[TicketSurvey.from_row(r) for r in _rows(data, "surveys")],
        absorbed={_str(i) for i in absorbed},
    )


def _ticket_v2(cls: type[TicketState], data: Mapping[str, Any]) -> TicketState:
    """A v2 ticket state: ``{"v": 2, "t": ticket_id}`` plus only the non-empty fields.

    ``c`` created, ``a`` assigned, ``o`` reopened: ``[[event_id, iso_ts(, specialist)]]``
    (no third cell = no specialist); ``f`` first response: one such row; ``x`` closures:
    ``[[event_id, iso_ts, specialist, resolved]]``; ``s`` surveys:
    ``[[event_id, "csat"|"nps", iso_ts, score]]``; ``u``: true when followed up; ``b``:
    absorbed event ids. Timestamps keep the offset they arrived with, so a state
    round-trips exactly. Other keys (the handler's ``rh``) are ignored.
    """
    state = cls(_str(data.get("t")))
    rows = data.get("c")
    if rows is not None:
        state.created = _v2_marks(rows, "c")
    rows = data.get("a")
    if rows is not None:
        state.assigned = _v2_marks(rows, "a")
    first = data.get("f")
    if first is not None:
        state.first_response = _v2_marks([first], "f")[0]
    rows = data.get("x")
    if rows is not None:
        closures = state.closures
        for row in _v2_rows(rows, "x"):
            if len(row) == 4:
                event_id, at, who, resolved = row
                if (
                    type(event_id) is str
                    and type(at) is str
                    and type(who) is str
                    and type(resolved) is bool
                ):
                    parsed = datetime.fromisoformat(at)
                    if parsed.tzinfo is not None:
                        closures.append(Closure(event_id, parsed, who, resolved))
                        continue
            closures.append(Closure.from_row(row))  # raises the error the row deserves
    rows = data.get("o")
    if rows is not None:
        state.reopens = _v2_marks(rows, "o")
    followed_up = data.get("u", False)
    if type(followed_up) is not bool:
        raise ValueError("state field 'u' (followed up) must be a bool")
    state.followed_up = followed_up
    rows = data.get("s")
    if rows is not None:
        state.surveys = [TicketSurvey.from_row(r) for r in _v2_rows(rows, "s")]
    absorbed = data.get("b")
    if absorbed is not None:
        if type(absorbed) is not list:
            raise ValueError("state field 'b' (absorbed) must be a list")
        state.absorbed = {_str(i) for i in absorbed}
    return state


def _v2_rows(rows: object, name: str) -> list[list[Any]]:
    if type(rows) is not list or not all(map(_is_list, rows)):
        raise ValueError(f"state field {name!r} must be a list of arrays")
    return rows


def _v2_marks(rows: object, name: str) -> list[Mark]:
    out: list[Mark] = []
    for row in _v2_rows(rows, name):
        size = len(row)
        if size == 2 or size == 3:
            event_id, at = row[0], row[1]
            who = row[2] if size == 3 else None
            if type(event_id) is str and type(at) is str and (who is None or type(who) is str):
                parsed = datetime.fromisoformat(at)
                if parsed.tzinfo is not None:
                    out.append(Mark(event_id, parsed, who))
                    continue
        # Raises the error the row deserves (or accepts e.g. a str subclass).
        out.append(Mark.from_row(row if size != 2 else [*row, None]))
    return out


HoursFn: TypeAlias = Callable[[datetime, datetime], float]


def ticket_contributions(
    state: TicketState, tz: tzinfo, hours_fn: HoursFn | None = None
) -> Contributions:
    """What one ticket adds to the day buckets, from its state alone (order-independent).

    ``hours_fn(created_at, first_response_at)`` replaces calendar hours as the response time
    (a business calendar); exclusion of negative durations still uses calendar hours.
    """
    return _ticket_contributions(state, tz, hours_fn, state.response_hours())


def ticket_contributions_and_issues(
    state: TicketState, tz: tzinfo, hours_fn: HoursFn | None = None
) -> tuple[Contributions, list[str]]:
    """``(ticket_contributions(...), data_quality_issues(state))``, measuring the response once."""
    hours = state.response_hours()
    issues = [NEGATIVE_RESPONSE_TIME] if hours is not None and hours < 0 else []
    return _ticket_contributions(state, tz, hours_fn, hours), issues


def _ticket_contributions(
    state: TicketState, tz: tzinfo, hours_fn: HoursFn | None, hours: float | None
) -> Contributions:
    out: Contributions = {}
    # The closure and response entries have distinct metrics, so they are set directly;
    # ``0.0 + x`` keeps the floats _add would produce (e.g. -0.0 becomes 0.0).
    closure = state.counted_closure()
    if closure is not None:
        day = local_day(closure.occurred_at, tz)
        if closure.resolved:
            out[(closure.specialist_id, day, RESOLUTION_RATE)] = (1.0, 1)
            out[(closure.specialist_id, day, FOLLOWUP_RATE)] = (
                1.0 if state.followed_up else 0.0,
                1,
            )
        else:
            out[(closure.specialist_id, day, RESOLUTION_RATE)] = (0.0, 1)
    first = state.first_response
    # Negative durations are clock or data errors: excluded, reported by data_quality_issues.
    if hours is not None and first is not None and hours >= 0 and first.specialist_id is not None:
        if hours_fn is not None:
            hours = hours_fn(_first_created(state.created), first.occurred_at)
        day = local_day(first.occurred_at, tz)
        out[(first.specialist_id, day, AVG_RESPONSE_TIME_HOURS)] = (0.0 + hours, 1)
    for survey in state.surveys:
        specialist = state.survey_specialist(survey.occurred_at)
        if specialist is None:
            continue  # held until an event names the ticket's specialist
        day = local_day(survey.occurred_at, tz)
        if survey.kind == "csat":
            _add(out, (specialist, day, CUSTOMER_SATISFACTION), csat_point(survey.score), 1)
        else:
            _add(out, (specialist, day, NPS), nps_point(survey.score), 1)
    return out


def data_quality_issues(state: TicketState) -> list[str]:
    """Problems in a ticket's data that KPIs had to work around."""
    issues: list[str] = []
    hours = state.response_hours()
    if hours is not None and hours < 0:
        issues.append(NEGATIVE_RESPONSE_TIME)
    return issues


def held_surveys(state: TicketState) -> list[TicketSurvey]:
    """Ticket-only surveys whose specialist cannot be known yet."""
    return [s for s in state.surveys if state.survey_specialist(s.occurred_at) is None]


def simple_contributions(event: Event, tz: tzinfo) -> Contributions:
    """Contributions of an event that needs no other event; empty for ticket/session-routed ones."""
    day = local_day(event.occurred_at, tz)
    if isinstance(event, RecordAudited):
        return {(event.specialist_id, day, RECORD_ACCURACY): (1.0 if event.accurate else 0.0, 1)}
    if isinstance(event, SurveyPeerReview):
        return {(event.specialist_id, day, COLLABORATION_SCORE): (csat_point(event.score), 1)}
    if isinstance(event, SurveyCsat) and event.specialist_id is not None:
        return {(event.specialist_id, day, CUSTOMER_SATISFACTION): (csat_point(event.score), 1)}
    if isinstance(event, SurveyNps) and event.specialist_id is not None:
        return {(event.specialist_id, day, NPS): (nps_point(event.score), 1)}
    return {}


# ---------------------------------------------------------------------------
# Training sessions
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Feedback:
    """One attendee's ``survey.training`` feedback."""

    event_id: str
    occurred_at: datetime
    trainer: str
    session_at: datetime
    score: int

    @property
    def order(self) -> tuple[datetime, str]:
        return (self.occurred_at, self.event_id)

    def to_row(self) -> list[Any]:
        return [
            self.event_id,
            _ts(self.occurred_at),
            self.trainer,
            _ts(self.session_at),
            self.score,
        ]

    @classmethod
    def from_row(cls, row: list[Any]) -> Feedback:
        score = row[4]
        if isinstance(score, bool) or not isinstance(score, int):
            raise ValueError(f"bad feedback row in state: {row!r}")
        return cls(_str(row[0]), _parse_ts(row[1]), _str(row[2]), _parse_ts(row[3]), score)


@dataclass
class TrainingSession:
    """All feedback received for one training session."""

    session_id: str
    feedback: list[Feedback] = field(default_factory=list)

    def apply(self, event: Event) -> bool:
        """Fold a ``survey.training`` event in; False when its event_id is already known."""
        if not isinstance(event, SurveyTraining) or event.session_id != self.session_id:
            raise ValueError(
                f"event {event.event_id} ({event.type}) does not update session {self.session_id}"
            )
        if any(f.event_id == event.event_id for f in self.feedback):
            return False
        self.feedback.append(
            Feedback(
                event.event_id,
                event.occurred_at,
                event.specialist_id,
                event.session_at,
                event.score,
            )
        )
        return True

    def to_json(self) -> dict[str, Any]:
        return self._doc(_ts)

    def to_storable(self) -> dict[str, Any]:
        """:meth:`to_json` with timestamps that ``orjson.dumps`` renders to the same bytes."""
        return self._doc(_ts_for_orjson)

    def _doc(self, ts: Callable[[datetime], Any]) -> dict[str, Any]:
        return {
            "v": _STATE_VERSION,
            "session_id": self.session_id,
            "feedback": [
                [f.event_id, ts(f.occurred_at), f.trainer, ts(f.session_at), f.score]
                for f in sorted(self.feedback, key=_BY_ORDER)
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainingSession:
        try:
            _check_version(data)
            return cls(
                session_id=_str(data.get("session_id")),
                feedback=[Feedback.from_row(r) for r in _rows(data, "feedback")],
            )
        except (IndexError, TypeError) as exc:
            raise ValueError(f"malformed training session state: {exc}") from None

    def mean_score(self) -> float | None:
        if not self.feedback:
            return None
        return sum(f.score for f in self.feedback) / len(self.feedback)


def training_contributions(session: TrainingSession, tz: tzinfo) -> Contributions:
    """One session for its trainer on the local date of ``session_at`` when mean score >= 4.0."""
    if not session.feedback:
        return {}
    # Feedback events may disagree on trainer/session_at; the earliest one decides so the
    # result does not depend on arrival order.
    first = min(session.feedback, key=lambda f: f.order)
    total = sum(f.score for f in session.feedback)
    # Integer comparison (sum >= 4 * n) avoids any float rounding at exactly 4.0.
    if total < 4 * len(session.feedback):
        return {}
    return {(first.trainer, local_day(first.session_at, tz), TRAINING_SESSIONS): (1.0, 1)}
