"""The generic webhook contract: alert, platform-incident, cycle-reminder and team-digest
bodies, headers, signature."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Final, Literal, TypeAlias

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

SIGNATURE_HEADER: Final = "X-KPI-Signature"
DELIVERY_HEADER: Final = "X-KPI-Delivery"
# `type` of a platform-health incident body: what tells it apart from an alert body.
INCIDENT_TYPE: Final = "platform_incident"
# `type` of a channel test body (POST /v1/channels/{id}/test): about no alert at all.
CHANNEL_TEST_TYPE: Final = "channel_test"
# `type` of an appraisal-cycle reminder body (a meeting not held, plan goals due, a plan overdue).
REMINDER_TYPE: Final = "cycle_reminder"
# `type` of a team digest body (a period's KPIs against the previous period); its `kind` is
# always "digest".
DIGEST_TYPE: Final = "team_digest"

# What a body announces: an alert or incident that opened, or one that cleared.
Announced: TypeAlias = Literal["firing", "resolved"]
# Who a reminder is written for: the team's supervisor (the team's channels) or the
# specialist themself (an e-mail to their address, see docs/appraisal.md#reminders).
Audience: TypeAlias = Literal["supervisor", "specialist"]


class AlertPayload(BaseModel):
    """Generic webhook body of one alert; exactly the SPEC §4 fields, in SPEC order."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    alert_id: str
    status: Announced
    specialist_id: str
    team_id: str | None
    kpi: str
    window: str
    value: float | None
    qualified: float | None
    grade: str | None
    samples: int | None
    started_at: AwareDatetime
    resolved_at: AwareDatetime | None
    message: str

    def to_json_dict(self) -> dict[str, Any]:
        """Field dict with datetimes normalized to UTC (serialized as RFC 3339 "...Z")."""
        return _in_utc(self.model_dump(mode="python"), "started_at", "resolved_at")

    def to_json(self) -> bytes:
        """Compact JSON bytes, the exact bytes that get signed."""
        return dumps(self.to_json_dict())


class IncidentPayload(BaseModel):
    """Generic webhook body of a platform-health incident notice for admins.

    `type` is always "platform_incident": alert bodies have no `type`, so a receiver (and
    the sender reading the outbox) tells the two apart by it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    type: Literal["platform_incident"] = INCIDENT_TYPE
    incident_id: int
    status: Announced
    kind: str
    service: str
    summary: str
    detail: dict[str, Any]
    opened_at: AwareDatetime
    resolved_at: AwareDatetime | None
    occurrences: int
    message: str

    def to_json_dict(self) -> dict[str, Any]:
        """Field dict with datetimes normalized to UTC (serialized as RFC 3339 "...Z")."""
        return _in_utc(self.model_dump(mode="python"), "opened_at", "resolved_at")

    def to_json(self) -> bytes:
        """Compact JSON bytes, the exact bytes that get signed."""
        return dumps(self.to_json_dict())


class ChannelTestPayload(BaseModel):
    """Generic webhook body of a channel test: an admin checking that the channel works.

    `type` is always "channel_test"; it reports no alert and no incident, and a receiver
    should only acknowledge it (2xx).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    type: Literal["channel_test"] = CHANNEL_TEST_TYPE
    test_id: str
    channel_id: str
    channel_name: str
    requested_by: str
    sent_at: AwareDatetime
    message: str

    def to_json_dict(self) -> dict[str, Any]:
        """Field dict with the time normalized to UTC (serialized as RFC 3339 "...Z")."""
        return _in_utc(self.model_dump(mode="python"), "sent_at")

    def to_json(self) -> bytes:
        """Compact JSON bytes, the exact bytes that get signed."""
        return dumps(self.to_json_dict())


class ReminderPayload(BaseModel):
    """Generic webhook body of an appraisal-cycle reminder.

    `type` is always "cycle_reminder". `kind`: `meeting_not_held` (`quarter` is the finalised
    appraisal quarter), `goal_due` or `plan_overdue` (`quarter` is the plan's). `due` is the
    local date the step was due by; `detail` says what is due (its fields per kind).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    type: Literal["cycle_reminder"] = REMINDER_TYPE
    reminder_id: int
    kind: Literal["meeting_not_held", "goal_due", "plan_overdue"]
    audience: Audience
    specialist_id: str
    name: str | None
    team_id: str | None
    quarter: str
    due: date | None
    detail: dict[str, Any]
    created_at: AwareDatetime
    message: str

    def to_json_dict(self) -> dict[str, Any]:
        """Field dict with the time in UTC and the date as YYYY-MM-DD."""
        fields = _in_utc(self.model_dump(mode="python"), "created_at")
        fields["due"] = None if self.due is None else self.due.isoformat()
        return fields

    def to_json(self) -> bytes:
        """Compact JSON bytes, the exact bytes that get signed."""
        return dumps(self.to_json_dict())


class _DigestPart(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


DigestPeriodKind: TypeAlias = Literal["week", "month"]
# How a member's grade on a KPI moved between the two periods across the qualified line.
Crossing: TypeAlias = Literal["fell_below", "recovered"]


class DigestPeriod(_DigestPart):
    """A closed range of local dates: an ISO week (`2026-W49`, Monday to Sunday) or a
    calendar month (`2026-12`)."""

    name: str
    kind: DigestPeriodKind
    start: date
    end: date


class DigestKpi(_DigestPart):
    """One KPI pooled for the team: this period, the previous one, and the change.

    `samples` is the denominator (for `training_sessions`, the count itself); `change` is
    `value − previous_value` in the KPI's unit (a share of 1 for ratios), null when either
    is null.
    """

    kpi: str
    value: float | None
    samples: int | None
    grade: str | None
    previous_value: float | None
    previous_samples: int | None
    previous_grade: str | None
    change: float | None
    qualified: float | None
    higher_is_better: bool


class DigestCrossing(_DigestPart):
    """A member whose grade on `kpi` crossed the qualified line between the two periods."""

    specialist_id: str
    name: str | None
    kpi: str
    direction: Crossing
    value: float | None
    previous_value: float | None
    qualified: float | None


class DigestGoal(_DigestPart):
    kpi: str
    target: float
    due: date
    # Due on or before the period's last day (and the plan is not closed yet).
    overdue: bool


class DigestPlan(_DigestPart):
    """An unclosed improvement plan with goals due by the end of the next period."""

    specialist_id: str
    name: str | None
    quarter: str
    status: str
    goals: list[DigestGoal]


class DigestOpenAlert(_DigestPart):
    """An alert of the team still open when the digest was sent."""

    alert_id: str
    specialist_id: str
    name: str | None
    kpi: str
    value: float | None
    qualified: float | None
    started_at: AwareDatetime

    @field_validator("started_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)


class DigestContent(_DigestPart):
    """What scoring records for one team and period (and previews): the KPIs, who crossed a
    line, plans due. Notify adds the alerts open at send time (`DigestPayload`)."""

    team_id: str
    team_name: str | None
    timezone: str
    period: DigestPeriod
    previous: DigestPeriod
    members: int = Field(ge=0)
    kpis: list[DigestKpi]
    crossed: list[DigestCrossing]
    plans_due: list[DigestPlan]


class DigestPayload(DigestContent):
    """Generic webhook body of a team digest: `type` "team_digest", `kind` "digest".

    The content scoring recorded, the team's alerts open at send time (`open_alerts`, at
    most a page of them; `open_alerts_total` counts all) and the rendered `message`.
    """

    type: Literal["team_digest"] = DIGEST_TYPE
    kind: Literal["digest"] = "digest"
    digest_id: int
    open_alerts: list[DigestOpenAlert]
    open_alerts_total: int = Field(ge=0)
    created_at: AwareDatetime
    message: str

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    def to_json_dict(self) -> dict[str, Any]:
        """Field dict as JSON types: dates YYYY-MM-DD, times RFC 3339 UTC ("...Z")."""
        fields: dict[str, Any] = orjson.loads(self.to_json())
        return fields

    def to_json(self) -> bytes:
        """Compact JSON bytes, the exact bytes that get signed."""
        return dumps(self.model_dump(mode="python"))


Alerts: TypeAlias = AlertPayload | Sequence[AlertPayload]


def is_incident(body: Mapping[str, Any]) -> bool:
    """True for an incident notice body (or stored delivery payload), False for alerts."""
    return body.get("type") == INCIDENT_TYPE


def is_reminder(body: Mapping[str, Any]) -> bool:
    """True for an appraisal-cycle reminder body (or stored delivery payload)."""
    return body.get("type") == REMINDER_TYPE


def is_digest(body: Mapping[str, Any]) -> bool:
    """True for a team digest body (or stored delivery payload)."""
    return body.get("type") == DIGEST_TYPE


def _in_utc(fields: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        if fields[key] is not None:
            fields[key] = fields[key].astimezone(UTC)
    return fields


def dumps(obj: Any) -> bytes:
    """orjson with RFC 3339 UTC datetimes ("Z"); non-UTC offsets are kept as given."""
    return orjson.dumps(obj, option=orjson.OPT_UTC_Z)


def alert_list(alerts: Alerts) -> list[AlertPayload]:
    """The alerts of one delivery as a list; a delivery always carries at least one."""
    items = [alerts] if isinstance(alerts, AlertPayload) else list(alerts)
    if not items:
        raise ValueError("no alerts to deliver")
    return items


def webhook_body(alerts: Alerts) -> bytes:
    """One alert → its payload object; a sequence (grouped delivery) → {"alerts": [...]}."""
    if isinstance(alerts, AlertPayload):
        return alerts.to_json()
    return dumps({"alerts": [a.to_json_dict() for a in alert_list(alerts)]})


def sign_body(secret: str | bytes, body: bytes) -> str:
    """`X-KPI-Signature` value: "sha256=" + hex HMAC-SHA256 of the exact body."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify_webhook_signature(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """Receiver-side check of `X-KPI-Signature`, constant-time."""
    if not header:
        return False
    expected = sign_body(secret, body).encode()
    scheme, _, digest = header.strip().partition("=")
    # Hex case is not significant; compare bytes so non-ASCII input cannot raise.
    given = f"{scheme.lower()}={digest.lower()}".encode(errors="replace")
    return hmac.compare_digest(expected, given)
