"""Event-history generator shared by the engine tests and the chaos harness (one generator)."""

from __future__ import annotations

import random
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from shared.events import Event, validate_event_obj

DEFAULT_TZ = ZoneInfo("America/New_York")
DEFAULT_SPECIALISTS = ("s1", "s2", "s3", "s4")
# ticket.created channels (issue 17): none, blank, CJK, emoji and the longest an event allows.
CHANNELS: tuple[str | None, ...] = (None, "web", "电话", "", "📱 app", "x" * 128, "web")
OFFSET_ZONES = (ZoneInfo("UTC"), ZoneInfo("Asia/Shanghai"), DEFAULT_TZ, ZoneInfo("Europe/Berlin"))


def dst_anchors(tz: tzinfo) -> list[datetime]:
    """DST switches and quarter edges in local time, down to the last millisecond."""
    local = [
        datetime(2026, 3, 8, 1, 59, 59, 999000),  # spring forward (NY) at 02:00
        datetime(2026, 3, 8, 3, 0, 0),
        datetime(2026, 3, 31, 23, 59, 59, 999000),  # Q1 -> Q2
        datetime(2026, 4, 1, 0, 0, 0),
        datetime(2026, 6, 30, 23, 59, 59, 999000),  # Q2 -> Q3
        datetime(2026, 7, 1, 0, 0, 0),
        datetime(2026, 11, 1, 1, 30, 0),  # fall back (NY): ambiguous hour
        datetime(2026, 12, 31, 23, 59, 59, 999000),  # Q4 -> next year
    ]
    return [d.replace(tzinfo=tz) for d in local]


def recent_anchors(now: datetime, tz: tzinfo, days: int) -> list[datetime]:
    """Local midnights of the last ``days`` days (and one millisecond before each)."""
    today = now.astimezone(tz).date()
    out: list[datetime] = []
    for back in range(1, days + 1):
        d = today - timedelta(days=back)
        midnight = datetime(d.year, d.month, d.day, tzinfo=tz)
        out += [midnight, midnight - timedelta(milliseconds=1)]
    return out


class HistoryMaker:
    """Random but plausible event histories (dicts validated into Events).

    Defaults reproduce the engine tests' histories exactly (same random draws). The chaos
    harness widens them: more specialists, recent anchors, a latest instant (nothing in the
    future) and per-specialist ``quality`` (probability of a good outcome) so that some
    specialists are qualified and others are not.
    """

    def __init__(
        self,
        rng: random.Random,
        tz: tzinfo = DEFAULT_TZ,
        prefix: str = "",
        *,
        specialists: Sequence[str] = DEFAULT_SPECIALISTS,
        anchors: Sequence[datetime] | None = None,
        spread_minutes: int = 3000,
        latest: datetime | None = None,
        quality: Mapping[str, float] | None = None,
    ) -> None:
        self.rng = rng
        self.anchors = list(anchors) if anchors is not None else dst_anchors(tz)
        self.prefix = prefix
        self.seq = 0
        self.specialists = tuple(specialists)
        self.spread = spread_minutes
        self.latest = latest
        self.quality = quality

    def when(self) -> datetime:
        rng = self.rng
        base = rng.choice(self.anchors)
        roll = rng.random()
        if roll < 0.3:
            at = base
        elif roll < 0.45:
            at = base + timedelta(milliseconds=rng.choice((-1, 1)))
        else:
            at = base + timedelta(minutes=rng.randint(-self.spread, self.spread))
        if self.latest is not None and at > self.latest:
            at = self.latest - timedelta(minutes=rng.randint(1, 600))
        return at

    def stamp(self, at: datetime) -> str:
        return at.astimezone(self.rng.choice(OFFSET_ZONES)).isoformat()

    def event(self, type_: str, **fields: Any) -> Event:
        self.seq += 1
        obj = {"event_id": f"{self.prefix}e{self.seq}", "type": type_, **fields}
        obj.setdefault("occurred_at", self.stamp(self.when()))
        return validate_event_obj(obj)

    def who(self) -> str:
        return self.rng.choice(self.specialists)

    def _good(self, who: str, base: float) -> bool:
        """A good outcome with probability ``base``, or the specialist's quality when set."""
        p = base if self.quality is None else self.quality.get(who, base)
        return self.rng.random() < p

    def _score(self, who: str | None) -> int:
        """A 1..5 rating: uniform, or biased by the specialist's quality when known."""
        if self.quality is None or who is None:
            return self.rng.randint(1, 5)
        return self.rng.randint(4, 5) if self._good(who, 0.5) else self.rng.randint(1, 3)

    def ticket(self, ticket_id: str) -> list[Event]:
        rng, out = self.rng, []
        for n in range(rng.choice((0, 1, 1, 1, 2))):
            fields: dict[str, Any] = {"ticket_id": ticket_id}
            if rng.random() < 0.7:
                fields["specialist_id"] = self.who()
            # Channels from a hash, not the rng: histories of a seed stay what they were.
            channel = CHANNELS[zlib.crc32(f"{ticket_id}/{n}".encode()) % len(CHANNELS)]
            if channel is not None:
                fields["channel"] = channel
            out.append(self.event("ticket.created", **fields))
        for _ in range(rng.randint(0, 2)):
            out.append(self.event("ticket.assigned", ticket_id=ticket_id, specialist_id=self.who()))
        for _ in range(rng.choice((0, 1, 1, 2))):
            out.append(
                self.event("ticket.first_response", ticket_id=ticket_id, specialist_id=self.who())
            )
        for _ in range(rng.randint(0, 3)):
            who = self.who()
            out.append(
                self.event(
                    "ticket.closed",
                    ticket_id=ticket_id,
                    specialist_id=who,
                    resolved=self._good(who, 0.7),
                )
            )
        for _ in range(rng.choice((0, 0, 1, 2))):
            out.append(self.event("ticket.reopened", ticket_id=ticket_id))
        for _ in range(rng.choice((0, 1, 2))):
            out.append(self.event("ticket.followup", ticket_id=ticket_id, specialist_id=self.who()))
        for _ in range(rng.randint(0, 2)):
            kind = rng.choice(("survey.csat", "survey.nps"))
            score = rng.randint(1, 5) if kind == "survey.csat" else rng.randint(0, 10)
            fields = {"ticket_id": ticket_id, "score": score}
            if rng.random() < 0.3:
                fields["specialist_id"] = self.who()
            out.append(self.event(kind, **fields))
        if rng.random() < 0.3:
            who = self.who()
            out.append(
                self.event(
                    "record.audited",
                    ticket_id=ticket_id,
                    specialist_id=who,
                    accurate=self._good(who, 0.8),
                )
            )
        return out

    def history(self, tickets: int, sessions: int = 2, loose: int = 4) -> list[Event]:
        rng, out = self.rng, []
        for t in range(tickets):
            out.extend(self.ticket(f"{self.prefix}t{t}"))
        for s in range(sessions):
            trainer, session_at = self.who(), self.stamp(self.when())
            for _ in range(rng.randint(1, 4)):
                who = trainer if rng.random() < 0.9 else self.who()
                out.append(
                    self.event(
                        "survey.training",
                        session_id=f"{self.prefix}sess{s}",
                        specialist_id=who,
                        session_at=session_at,
                        score=rng.randint(2, 5),
                    )
                )
        for _ in range(loose):
            kind = rng.choice(("record.audited", "survey.peer_review", "survey.csat", "survey.nps"))
            if kind == "record.audited":
                who = self.who()
                out.append(self.event(kind, specialist_id=who, accurate=self._good(who, 0.8)))
            elif kind == "survey.peer_review":
                who = self.who()
                out.append(
                    self.event(kind, specialist_id=who, reviewer_id="r1", score=self._score(who))
                )
            elif self.quality is None:  # the engine tests' exact draw order
                score = rng.randint(1, 5) if kind == "survey.csat" else rng.randint(0, 10)
                out.append(self.event(kind, specialist_id=self.who(), score=score))
            else:
                who = self.who()
                score = self._score(who) if kind == "survey.csat" else rng.randint(0, 10)
                out.append(self.event(kind, specialist_id=who, score=score))
        return out


def deliveries(rng: random.Random, events: list[Event], dup_rate: float = 0.2) -> list[Event]:
    """Shuffled events plus duplicates, and a few same-id different-payload conflicts."""
    out = list(events)
    out.extend(rng.sample(events, int(len(events) * dup_rate)))
    for e in rng.sample(events, min(2, len(events))):
        if isinstance(e.model_dump().get("score"), int) and e.type in ("survey.csat",):
            out.append(e.model_copy(update={"score": 6 - e.score}))
    rng.shuffle(out)
    return out


@dataclass(frozen=True)
class Malformed:
    """One invalid input: raw bytes for a raw topic, or a JSON object for HTTP intake."""

    marker: str
    raw: bytes | None = None
    obj: dict[str, Any] | None = None
    topic: str = "tickets"  # "tickets" or "surveys" (Kafka only)


def malformed(rng: random.Random, n: int, prefix: str, *, http: bool) -> list[Malformed]:
    """``n`` invalid inputs of every kind, each carrying a unique marker for the checks."""
    out: list[Malformed] = []
    for i in range(n):
        marker = f"{prefix}bad{'h' if http else 'k'}{i}"
        now = "2026-03-01T09:30:00+08:00"
        objs: list[dict[str, Any]] = [
            {"event_id": marker, "type": "ticket.closed", "occurred_at": now, "ticket_id": "x"},
            {"event_id": marker, "type": "survey.csat", "occurred_at": now, "score": 9,
             "specialist_id": "x"},
            {"event_id": marker, "type": "ticket.teleported", "occurred_at": now},
            {"event_id": marker, "type": "ticket.created", "occurred_at": "2026-03-01 09:30",
             "ticket_id": "x"},
            {"event_id": marker, "type": "survey.nps", "occurred_at": now, "score": "ten",
             "specialist_id": "x"},
        ]  # fmt: skip
        kind = rng.randrange(len(objs) + (1 if http else 3))  # HTTP: also a non-JSON body
        topic = "surveys" if kind in (1, 4) else "tickets"
        if kind < len(objs):
            obj = objs[kind]
            if http:
                out.append(Malformed(marker, obj=obj))
            else:
                out.append(Malformed(marker, raw=orjson.dumps(obj), topic=topic))
        elif kind == len(objs):
            out.append(Malformed(marker, raw=f"{marker} is not JSON {{".encode()))
        elif kind == len(objs) + 1:
            out.append(Malformed(marker, raw=b"\xff\xfe" + marker.encode() + b"\xc3"))
        else:
            out.append(Malformed(marker, raw=orjson.dumps([marker, "not an object"])))
    return out


@dataclass(frozen=True)
class Poison:
    """One record produced straight to kpi.events that scoring must dead-letter once."""

    kind: str
    marker: str  # also its Kafka key: the dead letter carries it, whatever the bytes
    raw: bytes


POISON_KINDS = (
    "nul_in_id",
    "lone_surrogate",
    "c0_control_in_id",
    "c1_control_in_id",
    "invalid_utf8",
    "not_json",
    "schema_invalid",
    "huge_field",
    "empty_body",
)


def _audit(prefix: str, event_id: str, **extra: Any) -> bytes:
    body = {
        "event_id": event_id,
        "type": "record.audited",
        "occurred_at": "2026-03-01T09:30:00+08:00",
        "specialist_id": f"{prefix}poisoned",
        "accurate": True,
        **extra,
    }
    return orjson.dumps(body)


def _poison_raw(kind: str, marker: str, prefix: str) -> bytes:
    m = marker.encode()
    if kind == "nul_in_id":
        return _audit(prefix, marker + "\x00")
    if kind == "lone_surrogate":
        # orjson cannot write a lone surrogate; JSON text can carry one as an escape.
        return _audit(prefix, marker).replace(m, m + b"\\ud800", 1)
    if kind == "c0_control_in_id":
        return _audit(prefix, marker + "\x1b[0m")
    if kind == "c1_control_in_id":
        return _audit(prefix, marker + "\x9b")
    if kind == "invalid_utf8":
        return _audit(prefix, marker).replace(m, m + b"\xff\xfe", 1)
    if kind == "not_json":
        return m + b" is not JSON {"
    if kind == "schema_invalid":
        return _audit(prefix, marker, type="record.teleported")
    if kind == "huge_field":
        return _audit(prefix, marker, specialist_id="s" * 200_000)
    if kind == "empty_body":
        return b""
    raise ValueError(f"unknown poison kind {kind!r}")


def poison(prefix: str, round_: int) -> list[Poison]:
    """One record of every poison kind; markers unique per round."""
    out = []
    for i, kind in enumerate(POISON_KINDS):
        marker = f"{prefix}badp{round_}x{i}"
        out.append(Poison(kind, marker, _poison_raw(kind, marker, prefix)))
    return out
