"""Pure, deterministic alert state machine for KPI breaches (SPEC §4 "Notify service")."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any, Final, Literal, NamedTuple, TypeAlias

import orjson

from shared.catalogue import CATALOGUE, GRADES, Unit
from shared.incidents import AUTO, OPEN, Incident
from shared.webhooks import Announced

Status: TypeAlias = Literal["ok", "pending", "firing"]
NotifyKind: TypeAlias = Literal["firing", "reminder", "resolved"]

# Fixed forever: changing it would re-key every alert and delivery and break receiver dedup.
ALERT_NAMESPACE: Final = uuid.UUID("acd849f5-c84e-5233-8928-2761aacd2e62")


def kpi_unit(kpi: str) -> Unit:
    """The KPI's unit from the catalogue; it decides the hysteresis margin and number format.

    A key outside the catalogue (no scoring release sends one) reads as a ratio.
    """
    known = CATALOGUE.get(kpi)
    return "ratio" if known is None else known.unit


def kpi_higher_is_better(kpi: str) -> bool:
    """The KPI's direction from the catalogue; a key outside it counts as higher-is-better."""
    known = CATALOGUE.get(kpi)
    return True if known is None else known.higher_is_better


def require_aware(name: str, value: datetime | None) -> None:
    # Naive datetimes cannot be compared with aware ones and are not RFC 3339; refuse early.
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} must be timezone-aware")


@dataclass(frozen=True)
class Observation:
    """One graded KPI value for a specialist, as the scoring service reports it."""

    specialist_id: str
    kpi: str
    window: str
    value: float | None
    numerator: float | None
    denominator: float | None
    grade: str | None
    qualified: float | None
    excellent: float | None
    min_samples: int | None
    higher_is_better: bool
    observed_at: datetime

    def __post_init__(self) -> None:
        require_aware("observed_at", self.observed_at)
        if self.grade is not None and self.grade not in GRADES:
            raise ValueError(f"unknown grade {self.grade!r}")

    @property
    def samples(self) -> int | None:
        """Sample count behind the value (the denominator; null for count KPIs)."""
        if self.denominator is None:
            return None
        return int(self.denominator)


class SilenceScope(NamedTuple):
    """What a silence mutes: a specialist and/or a KPI, within one team.

    The team is the specialist's when the silence was set (None: a specialist without a
    team). Only an admin's KPI-wide silence (no specialist, no team) spans the organisation.
    """

    specialist_id: str | None
    kpi: str | None
    team_id: str | None

    @property
    def organisation_wide(self) -> bool:
        return self.specialist_id is None and self.team_id is None

    def mutes(self, specialist_id: str, kpi: str, team_id: str | None) -> bool:
        """True for an alert of `specialist_id`'s `kpi` while the specialist is in `team_id`.

        A specialist who moves to another team leaves the old team's silence behind: it
        mutes nothing until they are back in that team.
        """
        return (
            (self.specialist_id is None or self.specialist_id == specialist_id)
            and (self.kpi is None or self.kpi == kpi)
            and (self.organisation_wide or self.team_id == team_id)
        )


@dataclass(frozen=True)
class RuleConfig:
    """Tunables of the state machine; margins are in the KPI's own unit."""

    ratio_hysteresis: float = 0.02
    hours_hysteresis: float = 1.0
    repeat_interval: timedelta = timedelta(hours=24)
    pending_for: timedelta = timedelta(0)
    # Counts (training sessions) are integers: any margin below 1 would demand one extra session.
    count_hysteresis: float = 0.0

    def margin(self, kpi: str) -> float:
        """Hysteresis margin that applies to this KPI."""
        unit = kpi_unit(kpi)
        if unit == "hours":
            return self.hours_hysteresis
        if unit == "ratio":
            return self.ratio_hysteresis
        return self.count_hysteresis


@dataclass(frozen=True)
class AlertState:
    """Persisted alert state of one (specialist, KPI); every field is JSON/DB friendly.

    `episode` counts fired episodes (0 = never fired); `notified` is the last status
    announced to receivers for the current episode, so an announcement that a silence
    swallowed is still owed (see `owed`). `seq` numbers this episode's notifications and
    feeds `delivery_key`, so a resend after a crash carries the same key.
    """

    specialist_id: str
    kpi: str
    status: Status = "ok"
    episode: int = 0
    window: str | None = None
    started_at: datetime | None = None
    pending_since: datetime | None = None
    resolved_at: datetime | None = None
    last_notified_at: datetime | None = None
    acked_at: datetime | None = None
    notified: Announced | None = None
    seq: int = 0
    value: float | None = None
    qualified: float | None = None
    grade: str | None = None
    samples: int | None = None
    observed_at: datetime | None = None

    @property
    def alert_id(self) -> str:
        """Deterministic id of the current (or last) episode."""
        return alert_id(self.specialist_id, self.kpi, self.episode)

    @property
    def owed(self) -> Announced | None:
        """Announcement receivers have not seen yet (only non-None while silenced)."""
        if self.status == "firing" and self.notified != "firing":
            return "firing"
        if self.status != "firing" and self.notified == "firing":
            return "resolved"
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; datetimes as RFC 3339 strings."""
        out: dict[str, Any] = {}
        for f in fields(self):
            val = getattr(self, f.name)
            out[f.name] = val.isoformat() if isinstance(val, datetime) else val
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlertState:
        """Inverse of `to_dict`; unknown keys are ignored so older rows still load."""
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            name = f.name
            if name not in data:
                continue
            val = data[name]
            if name in _DATETIME_FIELDS and isinstance(val, str):
                val = datetime.fromisoformat(val)
            kwargs[name] = val
        return cls(**kwargs)


_DATETIME_FIELDS: Final = frozenset(
    {"started_at", "pending_since", "resolved_at", "last_notified_at", "acked_at", "observed_at"}
)


@dataclass(frozen=True)
class Decision:
    """Outcome of one evaluation: the new state, what to announce, whether to persist."""

    state: AlertState
    notify: NotifyKind | None
    changed: bool


def alert_id(specialist_id: str, kpi: str, episode: int) -> str:
    """Deterministic alert id: uuid5 over the (specialist, KPI, episode) triple."""
    # A JSON array is an unambiguous encoding whatever characters the ids contain.
    name = orjson.dumps([specialist_id, kpi, episode]).decode()
    return str(uuid.uuid5(ALERT_NAMESPACE, name))


def delivery_key(alert_id: str, status: str, channel_id: str, seq: int) -> str:
    """Deterministic idempotency key (`X-KPI-Delivery`) for one notification to one channel."""
    name = orjson.dumps(["delivery", alert_id, status, channel_id, seq]).decode()
    return str(uuid.uuid5(ALERT_NAMESPACE, name))


def incident_notice(incident: Incident) -> Announced | None:
    """What admins are told about a platform incident's current status (None: nothing).

    Open: firing. Resolved by itself (a condition that cleared): resolved, also when its
    opening was never relayed (notify was down), since the notice carries both times.
    Dismissed by an admin: nothing; the admin who closed it already knows.
    """
    if incident.status == OPEN:
        return "firing"
    return "resolved" if incident.resolved_by == AUTO else None


def initial_state(specialist_id: str, kpi: str) -> AlertState:
    """State of a (specialist, KPI) that has never been evaluated."""
    return AlertState(specialist_id=specialist_id, kpi=kpi)


def _samples_ok(obs: Observation) -> bool:
    # Grade "unqualified" already implies enough samples; re-check so a scorer that grades
    # too early cannot page a supervisor over two surveys.
    samples = obs.samples
    return obs.min_samples is None or samples is None or samples >= obs.min_samples


def is_breach(obs: Observation) -> bool:
    """True when the observation is below the qualified line with enough samples."""
    return (
        obs.grade == "unqualified"
        and obs.value is not None
        and math.isfinite(obs.value)
        and _samples_ok(obs)
    )


# Absorbs float noise such as 0.9 + 0.02 so "at or beyond line + margin" is exact in practice.
_EPS: Final = 1e-9


def is_recovered(obs: Observation, cfg: RuleConfig) -> bool:
    """True when a firing alert must resolve: clearly back over the line, or no longer gradable."""
    if obs.grade in (None, "insufficient_data") or obs.value is None or obs.qualified is None:
        return True
    if not math.isfinite(obs.value) or not _samples_ok(obs):
        return True
    if obs.grade == "unqualified":
        return False
    margin = cfg.margin(obs.kpi)
    if obs.higher_is_better:
        return obs.value >= obs.qualified + margin - _EPS
    return obs.value <= obs.qualified - margin + _EPS


def _track(state: AlertState, obs: Observation) -> AlertState:
    return replace(
        state,
        window=obs.window,
        value=obs.value,
        qualified=obs.qualified,
        grade=obs.grade,
        samples=obs.samples,
    )


def _fire(state: AlertState, now: datetime) -> AlertState:
    if state.notified == "firing":
        # Receivers were told this episode fired and never saw its (silenced) resolve: from
        # their point of view it is still open, so resume it instead of opening a new one.
        return replace(state, status="firing", pending_since=None, resolved_at=None)
    return replace(
        state,
        status="firing",
        episode=state.episode + 1,
        started_at=now,
        pending_since=None,
        resolved_at=None,
        last_notified_at=None,
        acked_at=None,
        notified=None,
        seq=0,
    )


def _transition(prev: AlertState, obs: Observation, now: datetime, cfg: RuleConfig) -> AlertState:
    if prev.status == "ok":
        if not is_breach(obs):
            # Healthy and staying healthy: nothing worth a database write.
            return prev
        if cfg.pending_for > timedelta(0):
            return _track(replace(prev, status="pending", pending_since=now), obs)
        return _track(_fire(prev, now), obs)
    if prev.status == "pending":
        if not is_breach(obs):
            return replace(prev, status="ok", pending_since=None)
        since = prev.pending_since if prev.pending_since is not None else now
        if now - since >= cfg.pending_for:
            return _track(_fire(prev, now), obs)
        return _track(prev, obs)
    if is_recovered(obs, cfg):
        return _track(replace(prev, status="ok", resolved_at=now, pending_since=None), obs)
    return _track(prev, obs)


def _reminder_due(state: AlertState, now: datetime, cfg: RuleConfig) -> bool:
    return (
        cfg.repeat_interval > timedelta(0)
        and state.acked_at is None
        and state.last_notified_at is not None
        and now - state.last_notified_at >= cfg.repeat_interval
    )


def decide(
    prev: AlertState | None,
    obs: Observation,
    now: datetime,
    cfg: RuleConfig,
    silenced: bool,
) -> Decision:
    """Advance the alert of (obs.specialist_id, obs.kpi) by one observation.

    Announcements are the difference between the new status and what receivers were last
    told (`AlertState.notified`), so silences defer rather than lose them, firing and
    resolved strictly alternate, and replaying an observation adds nothing. Observations
    older than the last persisted change are ignored, so replaying history is harmless.
    A repeat_interval <= 0 disables reminders.
    """
    require_aware("now", now)
    if prev is None:
        prev = initial_state(obs.specialist_id, obs.kpi)
    elif (prev.specialist_id, prev.kpi) != (obs.specialist_id, obs.kpi):
        raise ValueError("observation does not belong to this alert state")
    if prev.observed_at is not None and obs.observed_at < prev.observed_at:
        return Decision(prev, None, False)

    state = _transition(prev, obs, now, cfg)

    notify: NotifyKind | None = None
    if not silenced:
        owed = state.owed
        if owed is not None:
            notify = owed
        elif state.status == "firing" and _reminder_due(state, now, cfg):
            notify = "reminder"
    if notify is not None:
        state = replace(
            state,
            notified="resolved" if notify == "resolved" else "firing",
            last_notified_at=now,
            seq=state.seq + 1,
        )

    if state == prev:
        return Decision(prev, None, False)
    return Decision(replace(state, observed_at=obs.observed_at), notify, True)


def ack(state: AlertState, now: datetime) -> AlertState:
    """Acknowledge a firing alert: stops reminders for this episode; idempotent otherwise."""
    require_aware("now", now)
    if state.status != "firing" or state.acked_at is not None:
        return state
    return replace(state, acked_at=now)
