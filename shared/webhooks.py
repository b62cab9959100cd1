"""The generic webhook contract: alert, platform-incident and cycle-reminder bodies, headers,
signature."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, date
from typing import Any, Final, Literal, TypeAlias

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict

SIGNATURE_HEADER: Final = "X-KPI-Signature"
DELIVERY_HEADER: Final = "X-KPI-Delivery"
# `type` of a platform-health incident body: what tells it apart from an alert body.
INCIDENT_TYPE: Final = "platform_incident"
# `type` of a channel test body (POST /v1/channels/{id}/test): about no alert at all.
CHANNEL_TEST_TYPE: Final = "channel_test"
# `type` of an appraisal-cycle reminder body (a meeting not held, plan goals due, a plan overdue).
REMINDER_TYPE: Final = "cycle_reminder"

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


Alerts: TypeAlias = AlertPayload | Sequence[AlertPayload]


def is_incident(body: Mapping[str, Any]) -> bool:
    """True for an incident notice body (or stored delivery payload), False for alerts."""
    return body.get("type") == INCIDENT_TYPE


def is_reminder(body: Mapping[str, Any]) -> bool:
    """True for an appraisal-cycle reminder body (or stored delivery payload)."""
    return body.get("type") == REMINDER_TYPE


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
