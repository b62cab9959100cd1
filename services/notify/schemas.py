"""Pydantic shapes of the notify service: channel configs and API bodies."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
import urllib.parse
from typing import Annotated, Any, Literal, TypeAlias

import idna
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from services.notify.channels import (
    Channel,
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    SlackChannel,
    WebhookChannel,
    WeComChannel,
    mask_url,
)
from shared.scores import KpiName, SpecialistId, TeamId
from shared.text import ID_RULE, TEXT_RULE, StorableId, StorableText

ChannelKind: TypeAlias = Literal["webhook", "dingtalk", "wecom", "feishu", "slack", "email"]
MASK = "***"

# Outside strings follow shared.text. Ids, and the one-line labels shown in a dashboard cell,
# a log line or a mail header, follow the id rule (no control characters: log and header
# injection); free text the text rule (no NUL, no unpaired surrogate: PostgreSQL refuses it).
# Specialist, team and KPI ids are those of the kpi.scores contract (shared.scores).
Comment: TypeAlias = Annotated[str, StringConstraints(max_length=500), TEXT_RULE]

# -- channel configs -------------------------------------------------------------------


MAX_URL_LENGTH = 2048
# Host names after IDNA encoding: dot-separated labels (underscores occur on intranets).
_HOST_RE = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")
_IPV4_LIKE = re.compile(r"[0-9.]+")


def _http_url(value: str) -> str:
    """Accept only URLs the sender can use; messages never echo the URL (it holds tokens)."""
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_URL_LENGTH} characters")
    # urlsplit silently drops tabs and newlines, so check the raw text first.
    if any(c.isspace() or unicodedata.category(c).startswith("C") for c in value):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(value)
        host = parts.hostname
    except ValueError:
        raise ValueError("is not a valid URL (malformed host)") from None
    if not host:
        raise ValueError("must include a host")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or (port is None and parts.netloc.endswith(":")):
        raise ValueError("port must be a number from 1 to 65535")
    if not _valid_host(host, bracketed=parts.netloc.rpartition("@")[2].startswith("[")):
        raise ValueError("host is not a valid domain name or IP address")
    return value


def _valid_host(host: str, *, bracketed: bool) -> bool:
    """The host rules of httpx (the sender's client), so an accepted URL is sendable."""
    try:
        if bracketed:
            ipaddress.IPv6Address(host)
            return True
        if _IPV4_LIKE.fullmatch(host):
            ipaddress.IPv4Address(host)
            return True
        # IDNA 2008 like httpx: the stdlib codec (IDNA 2003) accepts hosts httpx rejects.
        ascii_host = host if host.isascii() else idna.encode(host).decode("ascii")
    except (ValueError, UnicodeError):  # idna.IDNAError is a UnicodeError
        return False
    return _HOST_RE.fullmatch(ascii_host) is not None


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookConfig(_Config):
    url: str
    secret: Annotated[str, StringConstraints(min_length=8), TEXT_RULE] = Field(
        description="HMAC-SHA256 key of X-KPI-Signature."
    )

    _check_url = field_validator("url")(_http_url)


class DingTalkConfig(_Config):
    url: str
    secret: StorableText | None = None

    _check_url = field_validator("url")(_http_url)


class WeComConfig(_Config):
    url: str

    _check_url = field_validator("url")(_http_url)


class FeishuConfig(_Config):
    url: str
    secret: StorableText | None = None
    card: bool = True

    _check_url = field_validator("url")(_http_url)


class SlackConfig(_Config):
    url: str

    _check_url = field_validator("url")(_http_url)


class EmailConfig(_Config):
    # Addresses and the host go into mail headers and the SMTP dialogue: the id rule keeps
    # CR/LF out at the door (EmailMessage would only refuse them at every send, for a day).
    sender: Annotated[str, StringConstraints(min_length=3), ID_RULE]
    recipients: list[StorableId] = Field(min_length=1)
    host: StorableId = "localhost"
    port: int = Field(default=25, ge=1, le=65535)
    username: StorableId | None = None
    password: StorableText | None = None
    starttls: bool = False


CONFIG_MODELS: dict[str, type[_Config]] = {
    "webhook": WebhookConfig,
    "dingtalk": DingTalkConfig,
    "wecom": WeComConfig,
    "feishu": FeishuConfig,
    "slack": SlackConfig,
    "email": EmailConfig,
}
# Fields that are secrets in full; URLs of robots carry tokens and are masked separately.
SECRET_FIELDS = frozenset({"secret", "password"})


def validate_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """Validated, normalized config dict of a channel kind (raises pydantic ValidationError)."""
    return CONFIG_MODELS[kind].model_validate(config).model_dump()


def masked_config(config: dict[str, Any]) -> dict[str, Any]:
    """Config safe to return or log: secrets replaced, URL paths and queries hidden."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key in SECRET_FIELDS:
            out[key] = None if value is None else MASK
        elif key == "url" and isinstance(value, str):
            out[key] = mask_url(value)
        else:
            out[key] = value
    return out


def merge_secrets(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """On update, omitted or masked secrets (and a masked URL) keep the stored value."""
    merged = dict(new)
    for key in SECRET_FIELDS:
        if key in old and merged.get(key, MASK) == MASK:
            merged[key] = old[key]
    if "url" in old and merged.get("url", MASK) in (MASK, mask_url(old["url"])):
        merged["url"] = old["url"]
    return merged


def build_channel(channel_id: str, kind: str, config: dict[str, Any]) -> Channel:
    """Channel dataclass of `channels.py` from a stored config."""
    if kind == "webhook":
        return WebhookChannel(id=channel_id, url=config["url"], secret=config["secret"])
    if kind == "dingtalk":
        return DingTalkChannel(id=channel_id, url=config["url"], secret=config.get("secret"))
    if kind == "wecom":
        return WeComChannel(id=channel_id, url=config["url"])
    if kind == "feishu":
        return FeishuChannel(
            id=channel_id,
            url=config["url"],
            secret=config.get("secret"),
            card=bool(config.get("card", True)),
        )
    if kind == "slack":
        return SlackChannel(id=channel_id, url=config["url"])
    if kind == "email":
        return EmailChannel(
            id=channel_id,
            sender=config["sender"],
            recipients=tuple(config["recipients"]),
            host=config.get("host", "localhost"),
            port=int(config.get("port", 25)),
            username=config.get("username"),
            password=config.get("password"),
            starttls=bool(config.get("starttls", False)),
        )
    raise ValueError(f"unknown channel kind {kind!r}")


# -- API bodies ------------------------------------------------------------------------


class ChannelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A label like a team name (the id rule, as scoring's DirectoryName): shown in one
    # dashboard cell and in the WARNING that names the channel of a failed delivery.
    name: Annotated[str, StringConstraints(min_length=1, max_length=200), ID_RULE]
    kind: ChannelKind
    team_id: TeamId | None = Field(
        default=None, description="Team whose alerts it gets; null = all."
    )
    lang: Literal["zh-CN", "en"] | None = None
    enabled: bool = True
    config: dict[str, Any]


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    specialist_id: SpecialistId | None = None
    # Only matched against alerts, so a key outside the catalogue is accepted too.
    kpi: KpiName | None = None
    until: AwareDatetime
    comment: Comment | None = None


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: Comment | None = None
