"""Synthetic demo team: pure event generation, plus producing it to the raw topics (`kpi demo`)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from zoneinfo import ZoneInfo

from shared.events import TICKET_TYPES
from shared.kafka_settings import KafkaSecurity

logger = logging.getLogger(__name__)

Kind = Literal["tickets", "surveys"]
Phase = Literal["backfill", "live"]


@dataclass(frozen=True)
class Emit:
    """One message for a raw topic: which one, its key and its exact bytes."""

    kind: Kind
    key: bytes | None
    value: bytes
    malformed: bool = False


@dataclass(frozen=True)
class Behaviour:
    """How one specialist works; probabilities per ticket, hours for response time."""

    archetype: str
    tickets_per_day: float
    resolve_p: float
    csat_p: float
    response_hours: float
    followup_p: float
    audit_p: float
    peer_p: float
    reopen_p: float
    trainer: bool = False
    # Behaviour for events generated live: decliners fall below lines, improvers recover.
    live: Behaviour | None = None


# Archetypes: (name, behaviour). Lines: CSAT 0.85/0.90, resolution 0.90/0.95, response
# 24/12 h, records 0.95/0.98, follow-up 0.80/0.90, collaboration 0.80/0.90.
_STAR = Behaviour("star", 6, 0.98, 0.965, 5, 0.96, 0.995, 0.97, 0.02, trainer=True)
_SOLID = Behaviour("solid", 5, 0.95, 0.925, 12, 0.9, 0.985, 0.92, 0.04)
_SLOW = Behaviour("slow_responder", 4, 0.94, 0.9, 34, 0.88, 0.98, 0.9, 0.05)
_UNHAPPY = Behaviour("unhappy_customers", 5, 0.93, 0.72, 16, 0.88, 0.98, 0.9, 0.08)
_SLOPPY = Behaviour("sloppy_records", 5, 0.95, 0.92, 13, 0.88, 0.86, 0.9, 0.05)
_NO_FOLLOWUP = Behaviour("no_followup", 5, 0.95, 0.92, 12, 0.55, 0.98, 0.92, 0.04)
_LONER = Behaviour("poor_collaboration", 5, 0.95, 0.92, 13, 0.9, 0.98, 0.55, 0.05)
_NEWCOMER = Behaviour("newcomer", 0.12, 0.85, 0.85, 20, 0.7, 0.95, 0.8, 0.1)
_DECLINING = Behaviour(
    "declining",
    5,
    0.935,
    0.89,
    14,
    0.87,
    0.975,
    0.88,
    0.05,
    live=Behaviour("declining_live", 5, 0.6, 0.25, 40, 0.4, 0.8, 0.5, 0.3),
)
_IMPROVING = Behaviour(
    "improving",
    5,
    0.84,
    0.78,
    22,
    0.78,
    0.95,
    0.82,
    0.1,
    live=Behaviour("improving_live", 5, 1.0, 1.0, 4, 1.0, 1.0, 1.0, 0.0),
)
# Every team gets a star and a decliner (so live alerts fire in every team); the other
# places rotate through solid people and typical weaknesses, offset per team.
_FIXED: tuple[Behaviour, ...] = (_STAR, _DECLINING)
_ROTATION: tuple[Behaviour, ...] = (
    _SOLID,
    _SLOW,
    _SOLID,
    _UNHAPPY,
    _IMPROVING,
    _SLOPPY,
    _NO_FOLLOWUP,
    _SOLID,
    _LONER,
    _NEWCOMER,
)
ARCHETYPES = tuple(sorted({b.archetype for b in _FIXED + _ROTATION}))

_TEAM_NAMES = (
    ("north", "North 华北"),
    ("east", "East 华东"),
    ("south", "South 华南"),
    ("west", "West 西部"),
    ("central", "Central 华中"),
    ("online", "Online 线上"),
    ("vip", "VIP 大客户"),
    ("overseas", "Overseas 海外"),
)
_SURNAMES = (
    ("Wang", "王"), ("Li", "李"), ("Zhang", "张"), ("Liu", "刘"), ("Chen", "陈"), ("Yang", "杨"),
    ("Zhao", "赵"), ("Huang", "黄"), ("Zhou", "周"), ("Wu", "吴"), ("Xu", "徐"), ("Sun", "孙"),
    ("Hu", "胡"), ("Zhu", "朱"), ("Gao", "高"), ("Lin", "林"), ("He", "何"), ("Guo", "郭"),
    ("Ma", "马"), ("Luo", "罗"),
)  # fmt: skip
_GIVEN = (
    ("Wei", "伟"), ("Fang", "芳"), ("Na", "娜"), ("Min", "敏"), ("Jing", "静"), ("Lei", "磊"),
    ("Yang", "洋"), ("Yan", "艳"), ("Jie", "杰"), ("Tao", "涛"), ("Ming", "明"), ("Chao", "超"),
    ("Xiu Ying", "秀英"), ("Hui", "慧"), ("Qiang", "强"), ("Li", "丽"), ("Jun", "军"),
    ("Ping", "平"), ("Gang", "刚"), ("Xia", "霞"), ("Yu", "宇"), ("Hao", "浩"), ("Lan", "兰"),
)  # fmt: skip
_CHANNELS = ("phone", "email", "chat", "wechat", "app")


@dataclass(frozen=True)
class DemoTeam:
    id: str
    name: str
    supervisor: str


@dataclass(frozen=True)
class DemoSpecialist:
    id: str
    name: str
    team_id: str
    behaviour: Behaviour


@dataclass(frozen=True)
class Roster:
    teams: tuple[DemoTeam, ...]
    specialists: tuple[DemoSpecialist, ...]

    def team_members(self, team_id: str) -> list[DemoSpecialist]:
        return [s for s in self.specialists if s.team_id == team_id]


def _jitter(b: Behaviour, rng: random.Random) -> Behaviour:
    """Individual variation around an archetype, small enough to keep its character."""

    def p(x: float, spread: float = 0.015) -> float:
        return min(1.0, max(0.0, x + rng.uniform(-spread, spread)))

    return replace(
        b,
        tickets_per_day=b.tickets_per_day * rng.uniform(0.8, 1.25),
        resolve_p=p(b.resolve_p),
        csat_p=p(b.csat_p),
        response_hours=b.response_hours * rng.uniform(0.85, 1.15),
        followup_p=p(b.followup_p),
        audit_p=p(b.audit_p, 0.005),
        peer_p=p(b.peer_p),
        trainer=b.trainer or rng.random() < 0.25,
    )


def build_roster(teams: int = 4, specialists: int = 32, seed: int = 7) -> Roster:
    """Teams with supervisors and specialists with distinct behaviours (deterministic)."""
    if not 1 <= teams <= len(_TEAM_NAMES):
        raise ValueError(f"teams must be 1..{len(_TEAM_NAMES)}, got {teams}")
    if specialists < teams:
        raise ValueError(f"specialists ({specialists}) must be at least teams ({teams})")
    rng = random.Random(seed)
    team_list = tuple(
        DemoTeam(f"demo-{tid}", name, f"sup-{tid}") for tid, name in _TEAM_NAMES[:teams]
    )
    used: set[str] = set()
    people: list[DemoSpecialist] = []
    for i in range(specialists):
        team = team_list[i % teams]
        slot = i // teams
        while True:
            (sp, sh), (gp, gh) = rng.choice(_SURNAMES), rng.choice(_GIVEN)
            name = f"{sh}{gh} {sp} {gp}"
            if name not in used:
                used.add(name)
                break
        if slot < len(_FIXED):
            base = _FIXED[slot]
        else:
            base = _ROTATION[(slot - len(_FIXED) + (i % teams) * 6) % len(_ROTATION)]
        behaviour = _jitter(base, rng)
        people.append(DemoSpecialist(f"demo-s{i + 1:03d}", name, team.id, behaviour))
    return Roster(team_list, tuple(people))


# ---------------------------------------------------------------------------
# Pure generation
# ---------------------------------------------------------------------------


def _ts(t: dt.datetime, tz: ZoneInfo) -> str:
    return t.astimezone(tz).isoformat(timespec="seconds")


@dataclass
class DemoGenerator:
    """Realistic event streams for a roster; no I/O, deterministic for a seed and run id."""

    roster: Roster
    seed: int = 7
    run_id: str = "run"
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    malformed_ratio: float = 0.005

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.seed}:{self.run_id}")
        self._n = 0
        self._tickets = 0
        self._sessions = 0

    # -- ids -----------------------------------------------------------------------

    def _event_id(self) -> str:
        self._n += 1
        return f"demo-{self.run_id}-{self._n}"

    def _event(self, type_: str, at: dt.datetime, **fields: Any) -> dict[str, Any]:
        return {
            "event_id": self._event_id(),
            "type": type_,
            "occurred_at": _ts(at, self.tz),
            "source": "demo",
            **{k: v for k, v in fields.items() if v is not None},
        }

    # -- one ticket ------------------------------------------------------------------

    def _hours(self, mean: float) -> float:
        # Log-normal: most replies are quick, a few take very long (as in real helpdesks).
        sigma = 0.6
        hours = self.rng.lognormvariate(math.log(max(mean, 0.1)) - sigma**2 / 2, sigma)
        return min(hours, 5 * mean)

    def ticket(
        self, spec: DemoSpecialist, created: dt.datetime, b: Behaviour
    ) -> list[dict[str, Any]]:
        """The whole life of one ticket: creation to surveys, reopen chains included."""
        rng = self.rng
        self._tickets += 1
        tid = f"T-{self.run_id}-{self._tickets}"
        events: list[dict[str, Any]] = []
        members = self.roster.team_members(spec.team_id)
        first_owner = spec
        if len(members) > 1 and rng.random() < 0.06:
            # Routed to a colleague first, then reassigned to the one who handles it.
            first_owner = rng.choice([m for m in members if m.id != spec.id])
        events.append(
            self._event(
                "ticket.created",
                created,
                ticket_id=tid,
                specialist_id=first_owner.id,
                channel=rng.choice(_CHANNELS),
            )
        )
        t = created
        if first_owner.id != spec.id:
            t = t + dt.timedelta(minutes=rng.uniform(5, 90))
            events.append(self._event("ticket.assigned", t, ticket_id=tid, specialist_id=spec.id))
        t = created + dt.timedelta(hours=self._hours(b.response_hours))
        events.append(self._event("ticket.first_response", t, ticket_id=tid, specialist_id=spec.id))
        resolved = False
        for attempt in range(3):
            t = t + dt.timedelta(hours=rng.uniform(0.5, 30))
            resolved = rng.random() < b.resolve_p
            events.append(
                self._event(
                    "ticket.closed", t, ticket_id=tid, specialist_id=spec.id, resolved=resolved
                )
            )
            if attempt == 2 or rng.random() >= b.reopen_p:
                break
            t = t + dt.timedelta(hours=rng.uniform(2, 48))
            events.append(self._event("ticket.reopened", t, ticket_id=tid))
        closed_at = t
        if resolved and rng.random() < b.followup_p:
            at = closed_at + dt.timedelta(hours=rng.uniform(2, 72))
            events.append(self._event("ticket.followup", at, ticket_id=tid, specialist_id=spec.id))
        if rng.random() < 0.6:
            satisfied = rng.random() < b.csat_p
            score = rng.choice((4, 5, 5)) if satisfied else rng.choice((1, 2, 3, 3))
            at = closed_at + dt.timedelta(hours=rng.uniform(0.5, 36))
            # Most surveys name only the ticket; scoring attributes them to the closer.
            who = spec.id if rng.random() < 0.3 else None
            events.append(
                self._event("survey.csat", at, ticket_id=tid, specialist_id=who, score=score)
            )
            if rng.random() < 0.4:
                nps = rng.randint(8, 10) if satisfied else rng.randint(0, 7)
                events.append(self._event("survey.nps", at, ticket_id=tid, score=nps))
        if rng.random() < 0.3:
            at = closed_at + dt.timedelta(hours=rng.uniform(1, 72))
            events.append(
                self._event(
                    "record.audited",
                    at,
                    ticket_id=tid,
                    specialist_id=spec.id,
                    accurate=rng.random() < b.audit_p,
                )
            )
        return events

    def peer_review(self, spec: DemoSpecialist, at: dt.datetime, b: Behaviour) -> dict[str, Any]:
        rng = self.rng
        mates = [m for m in self.roster.team_members(spec.team_id) if m.id != spec.id]
        reviewer = rng.choice(mates).id if mates else "demo-reviewer"
        score = rng.choice((4, 5)) if rng.random() < b.peer_p else rng.choice((2, 3))
        return self._event(
            "survey.peer_review", at, specialist_id=spec.id, reviewer_id=reviewer, score=score
        )

    def training(self, spec: DemoSpecialist, session_at: dt.datetime) -> list[dict[str, Any]]:
        """One session's attendee feedback (mean >= 4 for most trainers, so it counts)."""
        rng = self.rng
        self._sessions += 1
        sid = f"S-{self.run_id}-{self._sessions}"
        good = rng.random() < 0.85
        out = []
        for _ in range(rng.randint(3, 8)):
            score = rng.choice((4, 5, 5)) if good else rng.choice((2, 3, 4))
            at = session_at + dt.timedelta(hours=rng.uniform(1, 20))
            out.append(
                self._event(
                    "survey.training",
                    at,
                    session_id=sid,
                    specialist_id=spec.id,
                    session_at=_ts(session_at, self.tz),
                    score=score,
                )
            )
        return out

    def malformed(self, at: dt.datetime) -> Emit:
        """A broken message of a kind real producers send (must end in the dead-letter topic)."""
        rng = self.rng
        kind = rng.choice(("not_json", "out_of_range", "naive", "unknown_type", "missing"))
        base = self._event("survey.csat", at, ticket_id=f"T-{self.run_id}-x", score=4)
        topic: Kind = "surveys"
        if kind == "not_json":
            return Emit("tickets", None, b'{"event_id": "broken", "type": "ticket.cre', True)
        if kind == "out_of_range":
            base["score"] = 9
        elif kind == "naive":
            base["occurred_at"] = at.replace(tzinfo=None).isoformat(timespec="seconds")
        elif kind == "unknown_type":
            base["type"] = "ticket.escalated"
            topic = "tickets"
        else:
            base.pop("score")
        return Emit(topic, None, json.dumps(base).encode(), True)

    # -- streams -----------------------------------------------------------------------

    def _with_malformed(self, events: list[dict[str, Any]], at: dt.datetime) -> list[Emit]:
        out = [to_emit(e) for e in events]
        if self.malformed_ratio > 0:
            expected = len(events) * self.malformed_ratio
            n = int(expected) + (1 if self.rng.random() < expected - int(expected) else 0)
            out.extend(self.malformed(at) for _ in range(n))
        return out

    def backfill(self, days: int, now: dt.datetime) -> list[Emit]:
        """``days`` of history up to ``now``; events after ``now`` (unfinished work) are dropped."""
        rng = self.rng
        start = now - dt.timedelta(days=days)
        events: list[dict[str, Any]] = []
        for spec in self.roster.specialists:
            b = spec.behaviour
            next_training = start + dt.timedelta(days=rng.uniform(0, 25))
            for d in range(days):
                day_start = start + dt.timedelta(days=d)
                for _ in range(_poisson(rng, b.tickets_per_day)):
                    created = day_start + dt.timedelta(hours=rng.uniform(0, 24))
                    events.extend(self.ticket(spec, created, b))
                for _ in range(_poisson(rng, 0.6)):
                    at = day_start + dt.timedelta(hours=rng.uniform(0, 24))
                    events.append(self.peer_review(spec, at, b))
            if b.trainer:
                while next_training < now:
                    events.extend(self.training(spec, next_training))
                    next_training += dt.timedelta(days=rng.uniform(15, 35))
        kept = [e for e in events if _parse(e["occurred_at"]) <= now]
        rng.shuffle(kept)  # arrival order is never time order in real life either
        return self._with_malformed(kept, now)

    def live(self, now: dt.datetime, target_events: int) -> list[Emit]:
        """About ``target_events`` events whose last one happens at ``now`` (recent work)."""
        rng = self.rng
        people = self.roster.specialists
        weights = [s.behaviour.tickets_per_day for s in people]
        events: list[dict[str, Any]] = []
        while len(events) < target_events:
            spec = rng.choices(people, weights)[0]
            b = spec.behaviour.live or spec.behaviour
            if rng.random() < 0.07:
                events.append(self.peer_review(spec, now, b))
                continue
            lifecycle = self.ticket(spec, now, b)
            # Shift the life so its last event is now: what arrives live is finished work.
            last = max(_parse(e["occurred_at"]) for e in lifecycle)
            shift = last - now + dt.timedelta(seconds=rng.uniform(0, 60))
            for e in lifecycle:
                e["occurred_at"] = _ts(_parse(e["occurred_at"]) - shift, self.tz)
            events.extend(lifecycle)
        return self._with_malformed(events, now)


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method: fine for the small rates used here.
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _parse(ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ts)


def to_emit(event: dict[str, Any]) -> Emit:
    """Raw topic and key of an event, as a helpdesk connector would produce it."""
    kind: Kind = "tickets" if event["type"] in TICKET_TYPES else "surveys"
    key = event.get("ticket_id") or event.get("specialist_id")
    return Emit(kind, key.encode() if key else None, json.dumps(event, ensure_ascii=False).encode())


# ---------------------------------------------------------------------------
# Producing (I/O): directory over the scoring REST API, events to the raw topics
# ---------------------------------------------------------------------------

Progress = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class DemoTarget:
    bootstrap: str
    security: KafkaSecurity
    tickets_topic: str
    surveys_topic: str
    scoring_url: str
    admin_token: str
    notify_url: str | None = None


async def create_directory(target: DemoTarget, roster: Roster) -> bool:
    """PUT teams and specialists (admin); returns True when the demo teams already existed."""
    import httpx

    headers = {"Authorization": f"Bearer {target.admin_token}"}
    async with httpx.AsyncClient(base_url=target.scoring_url, headers=headers, timeout=10) as c:
        existing = await c.get("/v1/teams")
        existing.raise_for_status()
        known = {t["id"] for t in existing.json()["teams"]}
        already = all(t.id in known for t in roster.teams)
        for team in roster.teams:
            r = await c.put(
                f"/v1/teams/{team.id}", json={"name": team.name, "supervisor": team.supervisor}
            )
            r.raise_for_status()
        for s in roster.specialists:
            r = await c.put(f"/v1/specialists/{s.id}", json={"name": s.name, "team_id": s.team_id})
            r.raise_for_status()
    return already


async def create_webhook(target: DemoTarget, url: str) -> None:
    import httpx

    if not target.notify_url:
        raise ValueError("no notify URL known for the webhook channel")
    headers = {"Authorization": f"Bearer {target.admin_token}"}
    async with httpx.AsyncClient(base_url=target.notify_url, headers=headers, timeout=10) as c:
        r = await c.post(
            "/v1/channels",
            json={"name": "demo webhook", "kind": "webhook", "config": {"url": url}},
        )
        r.raise_for_status()


class Producer:
    """Thin async wrapper over the Kafka producer for the two raw topics."""

    def __init__(self, target: DemoTarget) -> None:
        from shared.kafka import create_producer

        self.target = target
        self._producer = create_producer(
            target.bootstrap, client_id="kpi-demo", security=target.security, linger_ms=20
        )

    async def __aenter__(self) -> Producer:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send_all(
        self, emits: Sequence[Emit], progress: Callable[[int], None] | None = None
    ) -> None:
        topics = {"tickets": self.target.tickets_topic, "surveys": self.target.surveys_topic}
        chunk = 2000
        for i in range(0, len(emits), chunk):
            futures = [
                await self._producer.send(topics[e.kind], e.value, key=e.key)
                for e in emits[i : i + chunk]
            ]
            await asyncio.gather(*futures)
            if progress is not None:
                progress(min(i + chunk, len(emits)))


@dataclass
class DemoOptions:
    teams: int = 4
    specialists: int = 32
    backfill_days: int = 60
    rate: float = 20.0
    malformed: float = 0.005
    seed: int = 7
    duration: float | None = None  # seconds of live streaming; None = until stopped
    force_backfill: bool = False
    webhook: str | None = None


async def run_demo(
    target: DemoTarget,
    opts: DemoOptions,
    tz: ZoneInfo,
    progress: Progress,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    stop: asyncio.Event | None = None,
) -> dict[str, int]:
    """Directory, then the backfill (unless already there), then live events at ``opts.rate``."""
    stop = stop or asyncio.Event()
    roster = build_roster(opts.teams, opts.specialists, opts.seed)
    already = await create_directory(target, roster)
    if opts.webhook:
        await create_webhook(target, opts.webhook)
    run_id = clock().strftime("%y%m%d%H%M%S")
    gen = DemoGenerator(roster, opts.seed, run_id, tz, opts.malformed)
    sent = {"backfill": 0, "live": 0, "malformed": 0}
    async with Producer(target) as producer:
        if opts.backfill_days > 0 and (opts.force_backfill or not already):
            emits = gen.backfill(opts.backfill_days, clock())
            sent["malformed"] += sum(e.malformed for e in emits)
            progress("backfill", 0, len(emits))
            await producer.send_all(emits, lambda n: progress("backfill", n, len(emits)))
            sent["backfill"] = len(emits)
        elif already and opts.backfill_days > 0:
            progress("backfill skipped: demo teams already exist (use --force-backfill)", 0, 0)
        if opts.rate <= 0:
            return sent
        started = asyncio.get_running_loop().time()
        tick = 0.5
        carry = 0.0
        while not stop.is_set():
            elapsed = asyncio.get_running_loop().time() - started
            if opts.duration is not None and elapsed >= opts.duration:
                break
            carry += opts.rate * tick
            n = int(carry)
            if n > 0:
                carry -= n
                emits = gen.live(clock(), n)
                sent["malformed"] += sum(e.malformed for e in emits)
                await producer.send_all(emits)
                sent["live"] += len(emits)
                progress("live", sent["live"], None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick)
    return sent


def iter_kinds(emits: Sequence[Emit]) -> Iterator[str]:
    """Event types of the well-formed messages (for tests and summaries)."""
    for e in emits:
        if not e.malformed:
            yield json.loads(e.value)["type"]
