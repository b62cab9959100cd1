"""What every connector shares: agents, changes, reading vendor JSON, event ids, canonical events.

Pure: no HTTP, SQL or Kafka. A connector turns one vendor payload into ``Change`` values; the
adapter resolves each change's agent to a specialist and hands the canonical event to intake.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from shared.deadletter import rfc3339
from shared.events import (
    INVALID_VALUE,
    MISSING_FIELD,
    NAIVE_TIMESTAMP,
    NOT_OBJECT,
    WHOLE_MESSAGE,
    WRONG_TYPE,
    InvalidEvent,
)

# Why a native change produced no canonical event (the ``reason`` label of
# kpi_webhook_ignored_total): a closed set, so the metric stays bounded.
EVENT_NOT_USED: Final = "event_not_used"
CUSTOMER_MESSAGE: Final = "customer_message"
PRIVATE_MESSAGE: Final = "private_message"
NOT_FIRST_REPLY: Final = "not_first_reply"
NO_AGENT: Final = "no_agent"
STATUS_NOT_COUNTED: Final = "status_not_counted"
NOT_A_RATING: Final = "not_a_rating"
OPENING_COMMENT: Final = "opening_comment"
IGNORED_REASONS: Final[frozenset[str]] = frozenset(
    {
        EVENT_NOT_USED,
        CUSTOMER_MESSAGE,
        PRIVATE_MESSAGE,
        NOT_FIRST_REPLY,
        NO_AGENT,
        STATUS_NOT_COUNTED,
        NOT_A_RATING,
        OPENING_COMMENT,
    }
)

# Canonical types that need the responsible specialist (SPEC §2).
_NEEDS_AGENT: Final = frozenset(
    {"ticket.assigned", "ticket.first_response", "ticket.closed", "ticket.followup"}
)


class NotUnderstood(ValueError):
    """The payload cannot be turned into events: dead-lettered, and the vendor gets a 4xx."""

    def __init__(self, field_path: str, reason: str, code: str = INVALID_VALUE) -> None:
        super().__init__(f"{field_path}: {reason}")
        self.field = field_path
        self.reason = reason
        self.code = code

    def as_invalid_event(self, vendor: str) -> InvalidEvent:
        return InvalidEvent.single(
            self.code, f"{vendor} payload not understood: {self.reason}", field=self.field
        )


@dataclass(frozen=True, slots=True)
class Agent:
    """A helpdesk agent as the vendor names it: its own id and/or an e-mail address."""

    vendor: str
    id: str | None
    email: str | None = None
    name: str | None = None

    @property
    def key(self) -> str:
        """What an unmapped agent is counted under, after ``vendor:``."""
        return self.id or (self.email or "").lower()


@dataclass(frozen=True, slots=True)
class Change:
    """One native change that maps to a canonical event (SPEC §2)."""

    type: str
    ticket_id: str
    occurred_at: dt.datetime
    # What makes this change unique within its ticket and type: the vendor's own ids and
    # times, never ours, so a redelivery of the same change yields the same event id.
    identity: tuple[str, ...] = ()
    agent: Agent | None = None
    resolved: bool | None = None
    score: int | None = None
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class Translation:
    """The canonical changes of one payload, and why the rest of it counts for nothing."""

    changes: tuple[Change, ...] = ()
    ignored: tuple[str, ...] = ()


def translation(changes: Sequence[Change], ignored: Sequence[str] = ()) -> Translation:
    """Keep the changes that can be counted; one needing an agent but naming none is ignored."""
    kept = [c for c in changes if c.agent is not None or c.type not in _NEEDS_AGENT]
    reasons = [*ignored, *([NO_AGENT] * (len(changes) - len(kept)))]
    return Translation(tuple(kept), tuple(reasons))


def ignore(reason: str) -> Translation:
    return Translation((), (reason,))


# ------------------------------------------------------------------ reading vendor JSON


def as_object(value: object, path: str) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    if value is None:
        raise NotUnderstood(path, "is required", MISSING_FIELD)
    code = NOT_OBJECT if path == WHOLE_MESSAGE else WRONG_TYPE
    raise NotUnderstood(path, f"must be a JSON object, got {type(value).__name__}", code)


def optional_object(value: object, path: str) -> Mapping[str, Any]:
    """An object, or an empty one when the vendor sent nothing (null, "" or {})."""
    return {} if value is None or value == "" else as_object(value, path)


def optional_text(value: object, path: str) -> str | None:
    """A string or number as text; empty (an unrendered placeholder, null) is None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise NotUnderstood(path, f"must be a string or number, got {type(value).__name__}")
    text = str(value).strip()
    return text or None


def required_text(value: object, path: str) -> str:
    text = optional_text(value, path)
    if text is None:
        raise NotUnderstood(path, "is required", MISSING_FIELD)
    return text


def flag(value: object, path: str, default: bool) -> bool:
    """A JSON boolean, or "true"/"false" as a template renders it."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise NotUnderstood(path, "must be true or false", WRONG_TYPE)


def timestamp(value: object, path: str) -> dt.datetime:
    """An RFC 3339 / ISO 8601 time with an offset, or Unix seconds (number or digits)."""
    if value is None or value == "":
        raise NotUnderstood(path, "is required", MISSING_FIELD)
    if isinstance(value, bool):
        raise NotUnderstood(path, "must be a time, got a boolean", WRONG_TYPE)
    if isinstance(value, int | float):
        return _from_epoch(float(value), path)
    if not isinstance(value, str):
        raise NotUnderstood(path, f"must be a time, got {type(value).__name__}", WRONG_TYPE)
    text = value.strip()
    try:
        return _from_epoch(float(text), path)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise NotUnderstood(path, f"{text[:40]!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise NotUnderstood(path, "has no UTC offset", NAIVE_TIMESTAMP)
    return moment


def _from_epoch(seconds: float, path: str) -> dt.datetime:
    if not 0 < seconds < 32503680000:  # year 3000
        raise NotUnderstood(path, f"{seconds} is not a plausible Unix time")
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def stamp(moment: dt.datetime) -> str:
    """A time as identity text: the same instant always gives the same text."""
    return rfc3339(moment)


# ------------------------------------------------------------- ids and canonical events


def event_id(vendor: str, change: Change) -> str:
    """Deterministic: the same vendor change (a redelivery) always gets the same id."""
    parts = (vendor, change.ticket_id, change.type, *change.identity)
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{vendor}-{digest[:48]}"


def canonical(vendor: str, change: Change, specialist_id: str | None) -> dict[str, object]:
    """The SPEC §2 event of one change; ``intake`` validates it like any posted event."""
    event: dict[str, object] = {
        "event_id": event_id(vendor, change),
        "type": change.type,
        "occurred_at": rfc3339(change.occurred_at),
        "source": vendor,
        "ticket_id": change.ticket_id,
    }
    if specialist_id is not None and change.type != "ticket.reopened":
        event["specialist_id"] = specialist_id
    if change.channel is not None:
        event["channel"] = change.channel
    if change.resolved is not None:
        event["resolved"] = change.resolved
    if change.score is not None:
        event["score"] = change.score
    return event


@dataclass(frozen=True, slots=True)
class Resolved:
    """A change's specialist: mapped through an alias, or counted under ``vendor:agent``."""

    specialist_id: str | None
    unmapped: Agent | None = None


def resolve(agent: Agent | None, aliases: Mapping[tuple[str, str], str]) -> Resolved:
    """Agent id alias first, then the e-mail alias; otherwise ``vendor:agent-id``."""
    if agent is None:
        return Resolved(None)
    if agent.id is not None and (found := aliases.get((agent.vendor, agent.id))):
        return Resolved(found)
    if agent.email and (found := aliases.get(("email", agent.email.lower()))):
        return Resolved(found)
    return Resolved(f"{agent.vendor}:{agent.key}", agent)


@dataclass(frozen=True, slots=True)
class Rating:
    """Ratings as helpdesks word them: a 1..5 score, or good/bad (5/1)."""

    words: Mapping[str, int] = field(
        default_factory=lambda: {"good": 5, "bad": 1, "satisfied": 5, "unsatisfied": 1}
    )
    not_ratings: frozenset[str] = frozenset({"offered", "unoffered", "none"})

    def parse(self, value: object, path: str) -> int | None:
        """The CSAT score (1..5); None for a survey that was offered but not answered."""
        text = optional_text(value, path)
        if text is None or text.lower() in self.not_ratings:
            return None
        if text.isdigit() and 1 <= int(text) <= 5:
            return int(text)
        # "Good, I'm satisfied" renders with its explanation after the word.
        word = text.lower().replace(",", " ").split()[0]
        if word in self.words:
            return self.words[word]
        raise NotUnderstood(path, f"{text[:40]!r} is not a rating (1..5, good or bad)")


RATING = Rating()
