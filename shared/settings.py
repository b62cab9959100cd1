"""Typed runtime settings read from ``KPI_*`` environment variables (SPEC §4)."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.account_settings import AccountSettings
from shared.digest_settings import DigestSettings
from shared.durations import parse_duration
from shared.kafka_settings import KafkaSecuritySettings
from shared.oidc_settings import OidcSettings
from shared.topics import Topics

_WINDOW_RE = re.compile(r"^(?:[1-9][0-9]{0,2}d|qtd)$")
_HOSTPORT_RE = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9_.\-:]{1,253}$")
# Helpdesks whose own webhook payloads ingest translates (POST /v1/webhooks/{vendor}).
WEBHOOK_VENDORS = ("zendesk", "freshdesk", "zammad", "chatwoot")


def _split_list(value: Any, pattern: re.Pattern[str], what: str) -> Any:
    """A comma-separated variable as a list, each item matching `pattern` (else ValueError)."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        for item in value:
            if not isinstance(item, str) or not pattern.fullmatch(item):
                raise ValueError(f"'{item}' is not {what}")
    return value


def _json_document(value: Any) -> Any:
    """One JSON document per variable (NoDecode); a blank variable means "no overrides"."""
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"must be a JSON object: {exc}") from None
    return value


class SettingsError(RuntimeError):
    """Raised with a readable, multi-line explanation of invalid settings."""


class Settings(AccountSettings, OidcSettings, KafkaSecuritySettings, DigestSettings):
    """Every ``KPI_*`` variable the services understand; see docs/configuration.md."""

    model_config = SettingsConfigDict(env_prefix="KPI_", extra="ignore", frozen=True)

    database_url: SecretStr = Field(
        default=SecretStr("postgresql+asyncpg://postgres@127.0.0.1:5432/kpi"),
        description="SQLAlchemy URL of PostgreSQL (postgresql+asyncpg://user:pw@host:port/db).",
    )
    kafka_bootstrap: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1:9092"],
        description="Comma-separated host:port list of Kafka brokers.",
    )
    ingest_port: int = Field(default=8001, ge=1, le=65535)
    scoring_port: int = Field(default=8002, ge=1, le=65535)
    notify_port: int = Field(default=8003, ge=1, le=65535)
    bind_host: str = Field(default="127.0.0.1", description="Interface the HTTP servers bind to.")
    timezone: str = Field(default="UTC", description="IANA zone of the organisation's day buckets.")
    alert_window: str = Field(default="30d", description="Window alerts are evaluated on.")
    bootstrap_admin_token: SecretStr | None = Field(
        default=None, description="When set, accepted as an admin bearer token."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    topic_partitions: int = Field(default=6, ge=1, le=1024)
    topic_replication_factor: int | None = Field(
        default=None,
        ge=1,
        le=32,
        description="Replication factor of topics the platform creates "
        "(default: the broker's default.replication.factor).",
    )
    topic_prefix: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9._-]{0,100}$",
        description="Prefix for every topic name (isolates installations sharing a cluster).",
    )
    public_url: str = Field(
        default="", description="Base URL of the dashboard, used for links in alert messages."
    )
    # Every HTTP service: limits before parsing and the token cache (shared/http_guard.py).
    http_max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=512 * 1024 * 1024,
        description="Max request body in bytes on every route except POST /v1/events "
        "(KPI_INGEST_MAX_BODY_BYTES); checked before the body is read (413 beyond).",
    )
    auth_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        le=300,
        description="A verified token is re-checked against PostgreSQL after this long: "
        "revocation and team changes take effect within it.",
    )
    auth_stale_seconds: float = Field(
        default=300.0,
        ge=0,
        le=86400,
        description="While PostgreSQL cannot be reached, a token verified within this long "
        "is still accepted (others get 503 with Retry-After); 0 = none.",
    )
    # Ingest service.
    ingest_max_batch: int = Field(
        default=1000, ge=1, le=100_000, description="Max events in one POST /v1/events."
    )
    ingest_max_body_bytes: int = Field(
        default=5 * 1024 * 1024,
        ge=1024,
        le=512 * 1024 * 1024,
        description="Max body size of POST /v1/events in bytes.",
    )
    ingest_publish_timeout: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Seconds HTTP intake waits for the broker's ack before answering 503.",
    )
    ingest_session_timeout_ms: int = Field(
        default=10000,
        ge=1000,
        le=300_000,
        description="Consumer group session timeout of the ingest consumer.",
    )
    # Native helpdesk webhooks (POST /v1/webhooks/{vendor}, docs/connectors.md).
    webhook_secrets: Annotated[dict[str, list[SecretStr]], NoDecode] = Field(
        default_factory=dict,
        description="JSON {vendor: secret} (or a list of secrets while rotating), e.g. "
        '{"zammad": "s3cret", "zendesk": ["new", "old"]}; vendors: '
        + ", ".join(WEBHOOK_VENDORS)
        + ".",
    )
    webhook_max_age: Annotated[float, BeforeValidator(parse_duration)] = Field(
        default=300.0,
        gt=0,
        le=86400,
        description="A signed webhook whose timestamp is further than this from now is refused "
        "(401): replay protection for Zendesk and Chatwoot (e.g. 5m).",
    )
    # Scoring engine.
    scoring_max_batch: int = Field(
        default=4000, ge=1, le=100_000, description="Max kpi.events records per scoring batch."
    )
    scoring_session_timeout_ms: int = Field(
        default=10000,
        ge=1000,
        le=300_000,
        description="Consumer group session timeout of the scoring consumer.",
    )
    dedup_retention_days: int = Field(
        default=90,
        ge=0,
        le=36_500,
        description="Days an applied event id is remembered for deduplication (0 = forever). "
        "A copy arriving later than this is counted again, except the ticket.* events, "
        "surveys naming a ticket and training surveys: their ticket's or session's "
        "state recognises them by id for as long as it exists.",
    )
    ledger_retention_days: int = Field(
        default=0,
        ge=0,
        le=36_500,
        description="Days of explain-ledger facts kept, in whole months (0 = forever).",
    )
    stall_seconds: Annotated[float, BeforeValidator(parse_duration)] = Field(
        default=120.0,
        gt=0,
        le=86400,
        description="A consumer with lag that applies nothing for this long is stalled "
        "(platform-health alert, /readyz 503).",
    )
    # Notify service.
    notify_lang: Literal["zh-CN", "en"] = Field(
        default="zh-CN", description="Default language of alert messages."
    )
    notify_repeat_interval: float = Field(
        default=86400.0, ge=0, description="Seconds before a reminder of an unacked alert (0=off)."
    )
    notify_pending_seconds: float = Field(
        default=0.0, ge=0, description="Seconds a breach must last before the alert fires."
    )
    notify_ratio_hysteresis: float = Field(
        default=0.02, ge=0, le=1, description="Resolve margin above the line for ratio KPIs."
    )
    notify_hours_hysteresis: float = Field(
        default=1.0, ge=0, description="Resolve margin (hours) below the line for response time."
    )
    notify_group_wait_seconds: float = Field(
        default=5.0, ge=0, le=3600, description="Window in which alerts of a team are grouped."
    )
    notify_max_attempts: int = Field(
        default=0,
        ge=0,
        le=100_000,
        description="Optional cap on send attempts per retry budget (0 = none: "
        "KPI_NOTIFY_RETRY_FOR alone decides when a delivery is marked failed).",
    )
    notify_retry_base_seconds: float = Field(
        default=1.0, gt=0, le=3600, description="Base of the exponential retry backoff."
    )
    notify_retry_for: Annotated[float, BeforeValidator(parse_duration)] = Field(
        default=86400.0,
        gt=0,
        le=30 * 86400,
        description="How long a delivery is retried before it is marked failed (e.g. 24h, 90m).",
    )
    notify_retry_max_seconds: float = Field(
        default=300.0, gt=0, le=86400, description="Cap of one retry backoff delay."
    )
    notify_send_timeout: float = Field(
        default=10.0, gt=0, le=300, description="Seconds one channel send may take."
    )
    notify_lease_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="Claim lease of a delivery being sent."
    )
    notify_tick_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="Period of the re-evaluation tick."
    )
    notify_channel_concurrency: int = Field(
        default=4, ge=1, le=100, description="Concurrent sends per channel."
    )
    notify_sender: bool = Field(
        default=True, description="Run the delivery sender in this process."
    )
    notify_session_timeout_ms: int = Field(
        default=10000, ge=1000, le=300_000, description="Consumer session timeout of notify."
    )
    # Alert streams (SSE): notify's stream and the dashboard proxy's relay of it.
    stream_max_per_token: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Alert streams one token may hold open at once, in notify and in the "
        "dashboard proxy (429 beyond).",
    )
    stream_recheck_seconds: Annotated[float, BeforeValidator(parse_duration)] = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How often notify re-checks an open alert stream's token and teams.",
    )
    notify_stream_max_subscribers: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Alert streams one notify process serves at once (503 beyond).",
    )
    dashboard_stream_pool: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Connections to notify the dashboard proxy keeps for alert streams, apart "
        "from its pool for other calls (503 beyond).",
    )
    notify_allow_private_targets: bool = Field(
        default=False,
        description="Let channels reach loopback and private addresses (RFC 1918, ULA, "
        "CGNAT), e.g. a receiver on this machine. Link-local (cloud metadata), unspecified, "
        "multicast and reserved addresses and the platform's own endpoints stay refused.",
    )
    notify_allowed_private_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated host names or IP addresses that channels may reach "
        "although they are loopback or private (an intranet SMTP relay), policy otherwise on.",
    )
    notify_denied_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated further host names of the platform that channels may "
        "never reach (the database, broker, KPI_NOTIFY_URL, KPI_INGEST_URL and KPI_PUBLIC_URL "
        "hosts always are).",
    )
    notify_smtp_ca_file: str | None = Field(
        default=None,
        description="PEM file of the CAs trusted for SMTP STARTTLS (default: the system's).",
    )
    notify_smtp_allow_plaintext_login: bool = Field(
        default=False,
        description="Allow an email channel to log in without STARTTLS (password in clear).",
    )
    notify_silence_max_hours: float = Field(
        default=744.0,
        gt=0,
        le=8760,
        description="Longest silence, in hours from its creation (31 days: the dashboard's "
        "longest choice, 30 days, with a day's room for clock differences).",
    )
    # Dashboard: the scoring service proxies the alert calls of the dashboard here.
    notify_url: str = Field(
        default="",
        pattern=r"^(https?://[^\s/]+(/[^\s]*)?)?$",
        description="Base URL of the notify service as scoring reaches it "
        "(default http://127.0.0.1:KPI_NOTIFY_PORT).",
    )
    # Dashboard: scoring relays the admin's list of unmapped helpdesk agents from ingest.
    ingest_url: str = Field(
        default="",
        pattern=r"^(https?://[^\s/]+(/[^\s]*)?)?$",
        description="Base URL of the ingest service as scoring reaches it "
        "(default http://127.0.0.1:KPI_INGEST_PORT).",
    )
    kpi_lines: Annotated[dict[str, dict[str, float | int | None]], NoDecode] = Field(
        default_factory=dict,
        description='JSON overrides of KPI lines, e.g. {"resolution_rate": {"qualified": 0.88}}.',
    )

    # Quarterly appraisal.
    business_calendar: str | None = Field(
        default=None,
        description="Path of a YAML/JSON business calendar; response time then counts "
        "business hours only (default: calendar hours).",
    )
    sla_first_response_hours: float = Field(
        default=24.0,
        gt=0,
        le=8760,
        allow_inf_nan=False,
        description="First-response SLA in hours (business hours under KPI_BUSINESS_CALENDAR): "
        "the line of first_response_sla_rate and the per-ticket export's SLA met column.",
    )
    appraisal_rule: Annotated[dict[str, Any], NoDecode] = Field(
        default_factory=dict,
        description='JSON overall-grade rule, e.g. {"excellent_min_count": 4, '
        '"require_training": true, "min_graded_kpis": 0}.',
    )
    incentives: Annotated[dict[str, Any], NoDecode] = Field(
        default_factory=dict,
        description='JSON incentive mapping per overall grade, e.g. {"excellent": '
        '["recognition"], "promotion_after_consecutive_excellent": 2}.',
    )

    # Appraisal-cycle reminders (scoring scans, notify relays; docs/appraisal.md#reminders).
    reminders_enabled: bool = Field(default=True, description="Send appraisal-cycle reminders.")
    reminder_meeting_days: int = Field(
        default=14, ge=0, le=366, description="Days after finalisation to hold the meeting."
    )
    reminder_goal_due_days: int = Field(
        default=7, ge=0, le=366, description="Days before a plan goal's due date to remind."
    )
    reminder_repeat_days: int = Field(
        default=7, ge=1, le=366, description="Days between repeats while still due."
    )
    reminder_scan_seconds: Annotated[float, BeforeValidator(parse_duration)] = Field(
        default=3600.0, ge=1, le=86400, description="Period of scoring's reminder scan."
    )

    @field_validator("business_calendar")
    @classmethod
    def _blank_calendar_is_none(cls, value: str | None) -> str | None:
        # The file itself is scoring's to read (ScoringConfig): its errors stop scoring at
        # start-up, naming the variable.
        return value if value is not None and value.strip() else None

    @field_validator("topic_replication_factor", mode="before")
    @classmethod
    def _blank_is_default(cls, value: Any) -> Any:
        # Compose passes an unset variable as "": that means "the broker's default".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("kpi_lines", "appraisal_rule", "incentives", "oidc_role_map", mode="before")
    @classmethod
    def _parse_json_object(cls, value: Any) -> Any:
        return _json_document(value)

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _parse_webhook_secrets(cls, value: Any) -> Any:
        value = _json_document(value)
        if not isinstance(value, dict):
            return value  # pydantic names the type error
        secrets: dict[str, list[str]] = {}
        for vendor, secret in value.items():
            if vendor not in WEBHOOK_VENDORS:
                raise ValueError(
                    f"unknown vendor {vendor!r}; expected one of {', '.join(WEBHOOK_VENDORS)}"
                )
            listed = secret if isinstance(secret, list) else [secret]
            if not listed or not all(isinstance(s, str) and s.strip() for s in listed):
                raise ValueError(f"the secret of {vendor!r} must be a non-empty string or list")
            secrets[vendor] = listed
        return secrets

    @field_validator("notify_allowed_private_hosts", "notify_denied_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        return _split_list(value, _HOST_RE, "a host name or IP address")

    @field_validator("notify_smtp_ca_file")
    @classmethod
    def _blank_ca_file_is_none(cls, value: str | None) -> str | None:
        # Read by the notify sender at start-up (services.notify.transport), naming this variable.
        return value if value is not None and value.strip() else None

    @field_validator("kafka_bootstrap", mode="before")
    @classmethod
    def _split_bootstrap(cls, value: Any) -> Any:
        value = _split_list(value, _HOSTPORT_RE, "host:port")
        if isinstance(value, list) and not value:
            raise ValueError("must list at least one host:port")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if not raw.startswith(("postgresql+asyncpg://", "postgresql://", "postgres://")):
            raise ValueError(
                "must be a PostgreSQL URL such as postgresql+asyncpg://user@host:5432/db"
            )
        if raw.startswith(("postgresql://", "postgres://")):
            # Services always talk asyncpg; accept the plain libpq form people paste.
            raw = "postgresql+asyncpg://" + raw.split("://", 1)[1]
        return SecretStr(raw)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"'{value}' is not an IANA time zone name (e.g. Asia/Shanghai)"
            ) from None
        return value

    @field_validator("alert_window")
    @classmethod
    def _check_window(cls, value: str) -> str:
        if not _WINDOW_RE.match(value) or (value != "qtd" and int(value[:-1]) > 400):
            raise ValueError(f"'{value}' must be Nd with N in 1..400, or qtd")
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(self.kafka_bootstrap)

    @property
    def database_dsn(self) -> str:
        return self.database_url.get_secret_value()

    @property
    def notify_base_url(self) -> str:
        return (self.notify_url or f"http://127.0.0.1:{self.notify_port}").rstrip("/")

    @property
    def ingest_base_url(self) -> str:
        return (self.ingest_url or f"http://127.0.0.1:{self.ingest_port}").rstrip("/")


def describe_errors(exc: ValidationError) -> str:
    """Render settings errors with the environment variable each one came from."""
    lines = ["Invalid configuration:"]
    for err in exc.errors():
        name = "KPI_" + "_".join(str(p) for p in err["loc"][:1]).upper()
        lines.append(f"  {name}: {err['msg']}")
    return "\n".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, raising SettingsError with readable reasons."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe_errors(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once."""
    return load_settings()
