"""Bodies of notify's alert, silence and delivery routes, which scoring's dashboard proxy relays.

Defined once here: notify declares them as its routes' response models, and scoring's
``/v1/dashboard/notify/…`` proxy documents the same models for the bodies it passes on as
they are. ``extra="forbid"``: a field a route adds without declaring it here fails the
route's own response validation (and the tests), instead of reaching clients undocumented.
"""

from __future__ import annotations

import datetime as dt
from datetime import date
from typing import Any, Literal, TypeAlias

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# Times as the routes served them before they had models (pydantic's JSON: UTC with a Z).
Timestamp: TypeAlias = AwareDatetime
# Alert values come from the kpi.scores message: whichever JSON number it carried.
Number: TypeAlias = int | float
AlertStatus: TypeAlias = Literal["firing", "resolved"]
DeliveryStatus: TypeAlias = Literal["pending", "sending", "sent", "failed"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- alerts ----------------------------------------------------------------------------


class AlertOut(_Body):
    """One alert: an episode of one specialist's KPI beyond its line."""

    alert_id: str
    specialist_id: str
    kpi: str
    episode: int = Field(description="Counts the (specialist, KPI) episodes from 1.")
    team_id: str | None
    status: AlertStatus = Field(description="`firing` (open) or `resolved`.")
    window: str | None
    value: float | None
    qualified: float | None = Field(description="The line it is measured against.")
    grade: str | None
    samples: int | None
    started_at: Timestamp
    resolved_at: Timestamp | None
    acked_at: Timestamp | None
    acked_by: str | None
    updated_at: Timestamp


class AlertList(_Body):
    items: list[AlertOut] = Field(description="Newest first.")


class AttemptOut(_Body):
    """One send attempt of a delivery."""

    attempt: int
    at: Timestamp
    outcome: str = Field(description="e.g. sent, error, failed.")
    http_status: int | None
    error: str | None
    duration_ms: float | None


class AlertDeliveryOut(_Body):
    """A delivery that carried the alert, with every attempt."""

    id: int
    delivery_key: str
    channel_id: str
    channel_kind: str | None = Field(description="null once the channel is deleted.")
    status: DeliveryStatus
    attempts: int
    next_attempt_at: Timestamp
    last_error: str | None
    created_at: Timestamp
    sent_at: Timestamp | None
    resent_at: Timestamp | None
    resent_by: str | None
    grouped_alerts: int = Field(description="How many alerts the message carried.")
    attempt_log: list[AttemptOut] = Field(description="Oldest first.")


class AlertDeliveries(_Body):
    alert_id: str
    items: list[AlertDeliveryOut] = Field(description="Oldest first.")


# -- silences --------------------------------------------------------------------------


class SilenceOut(_Body):
    id: str
    specialist_id: str | None
    kpi: str | None
    team_id: str | None = Field(description="The specialist's team when it was set.")
    until: Timestamp
    comment: str | None
    created_by: str
    created_at: Timestamp
    applies: bool = Field(
        description="false for a specialist's silence left behind in a team they have left."
    )


class SilenceList(_Body):
    items: list[SilenceOut] = Field(description="Oldest first.")


# -- deliveries ------------------------------------------------------------------------


class DeliveryChannel(_Body):
    """The channel by name and kind, never its config (which holds its secrets)."""

    id: str
    name: str | None = Field(description="null once the channel is deleted.")
    kind: str | None


class DeliveryItem(_Body):
    """One alert the delivery carries."""

    alert_id: str
    kind: str = Field(description="What it announces: firing, resolved, reminder…")
    specialist_id: str
    name: str | None = Field(description="The specialist's name, when known.")
    kpi: str
    value: Number | None
    qualified: Number | None


class IncidentDeliveryItem(_Body):
    """One platform-health incident notice the delivery carries (admins' channels)."""

    type: Literal["platform_incident"] = Field(
        description="Tells it from an alert item, which has no `type`."
    )
    incident_id: int
    kind: str = Field(description="What it announces: firing (opened) or resolved.")
    incident_kind: str = Field(description="e.g. log_reset, consumer_stalled.")
    service: str
    summary: str


class ReminderDeliveryItem(_Body):
    """One appraisal-cycle reminder the delivery carries (the team's channels; the
    specialist's own copy by email)."""

    type: Literal["cycle_reminder"] = Field(
        description="Tells it from an alert item, which has no `type`."
    )
    reminder_id: int
    kind: Literal["reminder"] = Field(description="What it announces: always a reminder.")
    reminder_kind: Literal["meeting_not_held", "goal_due", "plan_overdue"]
    audience: Literal["supervisor", "specialist"] = Field(
        description="Who it is written for: the team's supervisor, or the specialist."
    )
    specialist_id: str
    name: str | None = Field(description="The specialist's name, when known.")
    quarter: str = Field(description="The appraisal quarter (meeting) or the plan's quarter.")
    due: date | None = Field(description="The local date the step was due by.")


class DigestDeliveryItem(_Body):
    """One team digest the delivery carries (the team's channels)."""

    type: Literal["team_digest"] = Field(
        description="Tells it from an alert item, which has no `type`."
    )
    digest_id: int
    kind: Literal["digest"] = Field(description="What it announces: always a digest.")
    team_id: str
    period: str = Field(description="YYYY-Www (ISO week) or YYYY-MM.")
    open_alerts: int = Field(description="The team's open alerts when it was relayed.")


class DeliveryOut(_Body):
    id: int
    delivery_key: str = Field(description="X-KPI-Delivery: the same on every attempt.")
    status: DeliveryStatus
    channel: DeliveryChannel
    team_id: str | None
    alert_ids: list[str] = Field(
        description="Empty for a platform-incident notice, an appraisal-cycle reminder or a "
        "team digest."
    )
    items: list[DeliveryItem | IncidentDeliveryItem | ReminderDeliveryItem | DigestDeliveryItem]
    attempts: int
    created_at: Timestamp
    last_attempt_at: Timestamp | None
    next_attempt_at: Timestamp | None = Field(description="Set while pending.")
    retry_until: Timestamp | None = Field(
        description="When its retry budget ends (null once sent)."
    )
    sent_at: Timestamp | None
    last_error: str | None
    resent_at: Timestamp | None
    resent_by: str | None
    resends: int


class DeliveryDetail(DeliveryOut):
    attempt_log: list[AttemptOut] = Field(description="Every attempt, oldest first.")


class DeliveryPage(_Body):
    items: list[DeliveryOut] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="`cursor` of the next page; null: the last.")


# -- channels ----------------------------------------------------------------------------


class ChannelOut(_Body):
    """One alert channel as the channel routes show it."""

    id: str
    name: str
    kind: str
    team_id: str | None
    lang: str | None
    enabled: bool
    config: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


class ChannelTestOut(_Body):
    """Answer of POST /v1/channels/{id}/test: the one attempt, as a delivery would log it."""

    channel_id: str
    kind: str
    status: Literal["sent", "failed"]
    http_status: int | None = Field(
        description="The target's HTTP status; null for email and when nothing answered."
    )
    error: str | None = Field(
        description="Fixed reason as in a delivery's last_error (never the target's answer)."
    )
    permanent: bool = Field(description="True when resending as is cannot succeed.")
    test_id: str
    delivery_key: str = Field(description="Sent as X-KPI-Delivery: test-<test_id>.")
    sent_at: dt.datetime
    duration_ms: float
    recorded: Literal[False] = Field(
        default=False,
        description="A test is not a delivery: no outbox row, no retries, not in "
        "GET /v1/deliveries; it is logged and counted in kpi_notify_channel_tests_total.",
    )
