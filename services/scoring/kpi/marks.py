"""What ticket and session states keep of each event (marks, closures, surveys, feedback)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any, Final, Literal, TypeAlias

# (occurred_at, event_id): the ``order`` of marks, closures, surveys and feedback.
BY_ORDER: Final = attrgetter("occurred_at", "event_id")


def iso(value: datetime) -> str:
    """A timestamp as stored: isoformat, keeping the offset it arrived with."""
    return value.isoformat()


def parse_iso(raw: object) -> datetime:
    if not isinstance(raw, str):
        raise ValueError(f"state timestamp must be a string, got {raw!r}")
    parsed = datetime.fromisoformat(raw)
    if parsed.tzinfo is None:
        raise ValueError(f"state timestamp must carry an offset, got {raw!r}")
    return parsed


def opt_str(raw: object) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    raise ValueError(f"expected a string or null in state, got {raw!r}")


def req_str(raw: object) -> str:
    if isinstance(raw, str):
        return raw
    raise ValueError(f"expected a string in state, got {raw!r}")


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
        return [self.event_id, iso(self.occurred_at), self.specialist_id]

    @classmethod
    def from_row(cls, row: list[Any]) -> Mark:
        return cls(req_str(row[0]), parse_iso(row[1]), opt_str(row[2]))


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
        return [self.event_id, iso(self.occurred_at), self.specialist_id, self.resolved]

    @classmethod
    def from_row(cls, row: list[Any]) -> Closure:
        if not isinstance(row[3], bool):
            raise ValueError(f"closure resolved flag must be a bool, got {row[3]!r}")
        return cls(req_str(row[0]), parse_iso(row[1]), req_str(row[2]), row[3])


SurveyKind: TypeAlias = Literal["csat", "nps"]


@dataclass(frozen=True)
class TicketSurvey:
    """A csat/nps survey that names its ticket; without ``specialist_id`` it rates the
    ticket's owner (SPEC §3), with one it rates that specialist and only takes the ticket's
    channel."""

    event_id: str
    kind: SurveyKind
    occurred_at: datetime
    score: int
    specialist_id: str | None = None

    def to_row(self) -> list[Any]:
        row = [self.event_id, self.kind, iso(self.occurred_at), self.score]
        return row if self.specialist_id is None else [*row, self.specialist_id]

    @classmethod
    def from_row(cls, row: list[Any]) -> TicketSurvey:
        kind, score = row[1], row[3]
        if kind not in ("csat", "nps") or isinstance(score, bool) or not isinstance(score, int):
            raise ValueError(f"bad survey row in state: {row!r}")
        who = opt_str(row[4]) if len(row) > 4 else None
        return cls(req_str(row[0]), kind, parse_iso(row[2]), score, who)


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
            iso(self.occurred_at),
            self.trainer,
            iso(self.session_at),
            self.score,
        ]

    @classmethod
    def from_row(cls, row: list[Any]) -> Feedback:
        score = row[4]
        if isinstance(score, bool) or not isinstance(score, int):
            raise ValueError(f"bad feedback row in state: {row!r}")
        return cls(req_str(row[0]), parse_iso(row[1]), req_str(row[2]), parse_iso(row[3]), score)
