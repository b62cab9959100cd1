"""Pydantic models of the scoring REST API: the exact SPEC §4 shapes, documented in OpenAPI."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeAlias, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.catalogue import Grade
from shared.directory import ALIAS_KINDS, ALIAS_LENGTH, ID_LENGTH
from shared.text import ID_RULE, TEXT_RULE

# Counts are shown as JSON integers (17, not 17.0) and ratios as unrounded floats; the
# int-first union keeps whichever the domain produced instead of coercing to float.
Number = int | float


class KpiKey(StrEnum):
    """The KPI keys of SPEC §1 and §3a, in table order (unit-tested against the catalogue)."""

    customer_satisfaction = "customer_satisfaction"
    resolution_rate = "resolution_rate"
    avg_response_time_hours = "avg_response_time_hours"
    record_accuracy = "record_accuracy"
    followup_rate = "followup_rate"
    collaboration_score = "collaboration_score"
    training_sessions = "training_sessions"
    nps = "nps"
    resolution_time_hours = "resolution_time_hours"
    first_response_sla_rate = "first_response_sla_rate"
    reopen_rate = "reopen_rate"


# Directory ids and names follow the event id rule (shared.text): they are stored, exported to
# CSV/XLSX and shown in one dashboard cell. The rule runs after the length constraints.
DirectoryId: TypeAlias = Annotated[
    str, StringConstraints(min_length=1, max_length=ID_LENGTH), ID_RULE
]
DirectoryName: TypeAlias = Annotated[str, StringConstraints(min_length=1, max_length=200), ID_RULE]
# Ids that are only looked up need just storable text (PostgreSQL refuses NUL in a
# parameter), so ids stored before the id rule existed stay reachable.
LookupId: TypeAlias = Annotated[str, StringConstraints(max_length=ID_LENGTH), TEXT_RULE]


class _Out(BaseModel):
    # extra="forbid" lets tests validate the hand-built hot-path bodies against these shapes.
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class WindowOut(_Out):
    name: str = Field(description="Canonical window name: Nd, qtd or YYYYQn.")
    from_: dt.date = Field(alias="from", description="First local date, inclusive.")
    to: dt.date = Field(description="Last local date, inclusive.")
    timezone: str = Field(description="IANA zone of the day buckets (KPI_TIMEZONE).")


class KpiOut(_Out):
    value: Number | None = Field(description="null when the denominator is 0.")
    numerator: Number | None
    denominator: int | None = Field(description="null for training_sessions.")
    grade: Grade | None = Field(
        description="null for nps, for training on Nd windows and for the informational "
        "measures (resolution_time_hours, first_response_sla_rate, reopen_rate) without lines."
    )
    qualified: float | None
    excellent: float | None
    min_samples: int | None


class OtherChannels(_Out):
    channels: int = Field(description="How many less busy channels are pooled here.")
    kpis: dict[str, KpiOut]


_BY_CHANNEL = Field(
    default=None,
    description="With ?by=channel: per ticket channel (the channel of the ticket's earliest "
    "ticket.created naming one, else 'unknown'; surveys without a ticket are 'unknown'), "
    "the KPI cells of the ticket-borne KPIs. The 50 channels with the most samples, busiest "
    "first; the rest pooled in other_channels.",
)
_OTHER_CHANNELS = Field(
    default=None, description="With ?by=channel: channels beyond the 50 listed, pooled."
)


class SpecialistKpis(_Out):
    specialist_id: str
    name: str | None
    team_id: str | None
    window: WindowOut
    kpis: dict[str, KpiOut] = Field(
        description="Every KPI key of SPEC §1, then the informational measures of §3a."
    )
    by_channel: dict[str, dict[str, KpiOut]] | None = _BY_CHANNEL
    other_channels: OtherChannels | None = _OTHER_CHANNELS


class MemberKpis(_Out):
    specialist_id: str
    name: str | None
    kpis: dict[str, KpiOut]


class TeamKpis(_Out):
    team_id: str
    name: str
    window: WindowOut
    kpis: dict[str, KpiOut] = Field(description="Pooled: sums over the members' buckets.")
    members: list[MemberKpis]
    by_channel: dict[str, dict[str, KpiOut]] | None = _BY_CHANNEL
    other_channels: OtherChannels | None = _OTHER_CHANNELS


class HistogramBucket(_Out):
    lower: float = Field(description="Hours, inclusive.")
    upper: float | None = Field(description="Hours, exclusive; null for the overflow bucket.")
    count: int


class _DistributionOut(_Out):
    kpi: str = Field(description="avg_response_time_hours or resolution_time_hours.")
    window: WindowOut
    count: int = Field(description="Tickets with a counted time (the KPI's denominator).")
    mean: float | None = Field(description="Exact mean, hours (the KPI's value).")
    p50: float | None = Field(description="Estimated median, hours; null when count is 0.")
    p90: float | None
    p99: float | None
    histogram: list[HistogramBucket] = Field(description="Non-empty buckets, lowest first.")
    method: str = Field(description="How percentiles are estimated.")
    relative_error: float = Field(
        description="Bound on |estimate - exact| / exact of a percentile (nearest rank) "
        "between the zero and overflow buckets."
    )
    bucket_factor: float = Field(description="Upper / lower of every finite bucket.")


class SpecialistDistribution(_DistributionOut):
    specialist_id: str


class TeamDistribution(_DistributionOut):
    team_id: str


class LeaderboardEntry(_Out):
    rank: int = Field(description="1 = best; equal values share a rank; null values come last.")
    specialist_id: str
    name: str | None
    team_id: str | None
    value: Number | None
    numerator: Number | None
    denominator: int | None
    grade: Grade | None


class Leaderboard(_Out):
    kpi: KpiKey
    window: WindowOut
    entries: list[LeaderboardEntry]


class HistorySums(_Out):
    value: Number | None
    numerator: Number | None
    denominator: int | None


class HistoryPoint(HistorySums):
    date: dt.date
    rolling_7d: HistorySums = Field(
        description="The 7 local dates ending at `date` (the 6 before `from` included), "
        "valued on their summed numerators and denominators."
    )


class History(_Out):
    specialist_id: str
    kpi: KpiKey
    from_: dt.date = Field(alias="from")
    to: dt.date
    points: list[HistoryPoint] = Field(description="One point per local date, oldest first.")


class TeamHistory(_Out):
    team_id: str
    name: str
    kpi: KpiKey
    from_: dt.date = Field(alias="from")
    to: dt.date
    points: list[HistoryPoint] = Field(
        description="One point per local date, oldest first; each day's sums added over the "
        "team's current members."
    )


class FactOut(_Out):
    day: dt.date
    source: str = Field(description="ticket:<id>, session:<id> or event:<event_id>.")
    num: float
    den: int


class FactsPage(_Out):
    items: list[FactOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null at end.")
    kept_from: dt.date | None = Field(
        default=None,
        description="Facts of days before this date were dropped (KPI_LEDGER_RETENTION_DAYS); "
        "the KPI values still count them. Null while every fact is kept.",
    )


class TeamIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: DirectoryName
    supervisor: DirectoryId | None = Field(
        default=None, description="Subject of the supervisor token."
    )


class TeamOut(_Out):
    id: str
    name: str
    supervisor: str | None


class TeamList(_Out):
    teams: list[TeamOut]


# The kinds of shared.directory.ALIAS_KINDS: a helpdesk's agent id, or an e-mail address.
AliasKind: TypeAlias = Literal["zendesk", "freshdesk", "zammad", "chatwoot", "email"]
AliasValue: TypeAlias = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=ALIAS_LENGTH), ID_RULE
]
assert set(get_args(AliasKind)) == set(ALIAS_KINDS)
ALIAS_NOTICE = (
    "Aliases apply to helpdesk webhooks received from now on (within about 10 seconds). "
    "Nothing already counted moves: events counted before under 'vendor:agent-id' (see "
    "GET /v1/webhooks/unmapped on the ingest service) stay where they are."
)


class SpecialistIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: DirectoryName | None = None
    team_id: DirectoryId | None = None
    aliases: dict[AliasKind, AliasValue] | None = Field(
        default=None,
        description="Helpdesk identities of this specialist for native webhooks, e.g. "
        '{"zendesk": "3612", "email": "li.na@example.com"}. Replaces the stored aliases; '
        "omitted keeps them, {} removes them. Each one belongs to one specialist (409). "
        "Applies to webhooks received from now on; nothing already counted moves.",
    )


class SpecialistOut(_Out):
    id: str
    name: str | None
    team_id: str | None


class SpecialistDetail(SpecialistOut):
    """One specialist (GET one, PUT): with the helpdesk aliases."""

    team_name: str | None = Field(
        default=None,
        description="The team's name (GET only; a specialist may not read the team itself).",
    )

    aliases: dict[str, str] = Field(
        description="Helpdesk identities native webhooks map to this specialist."
    )
    notice: str | None = Field(
        default=None,
        description="Only on PUT with aliases: what a new mapping does and does not do.",
    )


class SpecialistList(_Out):
    specialists: list[SpecialistOut]


class ImportedRowOut(_Out):
    row: int = Field(description="The row as a spreadsheet numbers it (the header is row 1).")
    id: str
    outcome: Literal["created", "updated", "unchanged"]


class SpecialistImport(_Out):
    """Answer of POST /v1/specialists/import: every row of the file, all applied (or none)."""

    dry_run: bool
    applied: bool = Field(description="True when the rows were written (never on a dry run).")
    columns: list[str] = Field(description="The file's columns, normalised to lower case.")
    counts: dict[str, int] = Field(description="Rows per outcome: created, updated, unchanged.")
    rows: list[ImportedRowOut]
    notice: str | None = Field(
        default=None, description="With alias columns: what a new mapping does and does not do."
    )


# -- platform health ------------------------------------------------------------------


class IncidentOut(_Out):
    id: int
    kind: str
    service: str
    status: Literal["open", "resolved"]
    summary: str
    detail: dict[str, Any] | None = Field(
        default=None, description="Admins only: topics, partitions, offsets, record keys."
    )
    occurrences: int
    opened_at: dt.datetime
    updated_at: dt.datetime
    resolved_at: dt.datetime | None
    resolved_by: str | None
    condition: bool = Field(description="Resolves by itself when it clears (not dismissible).")


class PlatformHealth(_Out):
    status: Literal["ok", "degraded", "stalled"]
    incidents: list[IncidentOut] = Field(description="Open incidents, newest first.")


class IncidentList(_Out):
    incidents: list[IncidentOut]


# -- dashboard --------------------------------------------------------------------------


class KpiNames(_Out):
    name: str
    label: str
    short: str


class CatalogueEntry(_Out):
    unit: str
    higher_is_better: bool
    graded: bool
    appraised: bool = Field(
        description="Part of the quarterly appraisal (SPEC §1); false for the informational "
        "measures (resolution_time_hours, first_response_sla_rate, reopen_rate)."
    )
    names: dict[str, KpiNames] = Field(description="By language (en, zh-CN).")


class LineOut(_Out):
    qualified: float | None
    excellent: float | None
    min_samples: int | None


class ConfigLine(LineOut):
    higher_is_better: bool


class Features(_Out):
    appraisals: bool
    specialist_appraisals: bool
    improvement_plans: bool
    appraisal_cycle: bool


class DashboardConfig(_Out):
    role: str
    subject: str
    team_ids: list[str]
    specialist_id: str | None = Field(description="A specialist caller's own id, else null.")
    kpis: list[KpiKey]
    catalogue: dict[str, CatalogueEntry]
    lines: dict[str, ConfigLine] = Field(description="Effective lines (overrides applied).")
    timezone: str
    today: dt.date
    alert_window: str
    features: Features


class KpiCell(_Out):
    value: Number | None
    numerator: Number | None
    denominator: int | None
    grade: Grade | None


class OverviewTeam(_Out):
    team_id: str
    name: str
    supervisor: str | None
    members: int
    kpis: dict[str, KpiCell] = Field(description="Pooled over the team's members.")


class OverviewMember(_Out):
    specialist_id: str
    name: str | None
    team_id: str | None
    kpis: dict[str, KpiCell]


class Overview(_Out):
    window: WindowOut
    lines: dict[str, LineOut]
    pooled: dict[str, KpiCell] = Field(description="Pooled over every visible specialist.")
    teams: list[OverviewTeam]
    members: list[OverviewMember]
