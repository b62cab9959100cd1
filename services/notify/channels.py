"""Pure payload builders and signatures for every notification channel (no I/O)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import html
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, ClassVar, Final, Literal, TypeAlias

from services.notify.messages import (
    Fmt,
    normalize_lang,
    render_group_text,
    render_group_title,
    render_incident_text,
    render_incident_title,
    render_text,
    render_title,
)
from services.notify.rules import AlertState, NotifyKind
from shared.incidents import STALL, Incident
from shared.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    AlertPayload,
    Alerts,
    Announced,
    IncidentPayload,
    alert_list,
    dumps,
    sign_body,
    webhook_body,
)

JSON_CONTENT_TYPE: Final = "application/json"

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MASK: Final = "***"


def make_payload(
    state: AlertState,
    *,
    team_id: str | None,
    lang: str = "zh-CN",
    link: str | None = None,
    kind: NotifyKind | None = None,
    names: Mapping[str, str] | None = None,
) -> AlertPayload:
    """Build the webhook payload of a fired (or resolved) alert; `message` is plain text."""
    if state.episode < 1 or state.started_at is None or state.window is None:
        raise ValueError("alert state has no fired episode")
    status: Literal["firing", "resolved"] = "firing" if state.status == "firing" else "resolved"
    payload = AlertPayload(
        alert_id=state.alert_id,
        status=status,
        specialist_id=state.specialist_id,
        team_id=team_id,
        kpi=state.kpi,
        window=state.window,
        value=state.value,
        qualified=state.qualified,
        grade=state.grade,
        samples=state.samples,
        started_at=state.started_at,
        resolved_at=state.resolved_at if status == "resolved" else None,
        message="",
    )
    text = render_text(payload, lang, link, kind=kind, names=names)
    return payload.model_copy(update={"message": text})


def make_incident_payload(
    incident: Incident, status: Announced, *, lang: str = "zh-CN", link: str | None = None
) -> IncidentPayload:
    """Build the notice of an incident that opened (`firing`) or cleared (`resolved`)."""
    payload = IncidentPayload(
        incident_id=incident.id,
        status=status,
        kind=incident.kind,
        service=incident.service,
        summary=incident.summary,
        detail=dict(incident.detail),
        opened_at=incident.opened_at,
        resolved_at=incident.resolved_at if status == "resolved" else None,
        occurrences=incident.occurrences,
        message="",
    )
    return payload.model_copy(update={"message": render_incident_text(payload, lang, link)})


# ---------------------------------------------------------------------------- requests


def mask_url(url: str) -> str:
    """Keep scheme, host and port only: robot URLs carry their access token in path or query.

    Never raises, whatever the string: it runs inside reprs, API output and log redaction,
    also for malformed URLs stored before validation was strict.
    """
    try:
        return _mask_url(url)
    except Exception:
        # Redaction fails closed: showing nothing beats breaking a log line or a listing.
        return _MASK


def _mask_url(url: str) -> str:
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket or an NFKC-invalid netloc
        return _MASK
    if not parts.scheme or not host:
        return _MASK
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        # Out of range or not a number: masked rather than echoed, it is not a known shape.
        host = f"{host}:{_MASK}"
    else:
        if port is not None:
            host = f"{host}:{port}"
    hidden = parts.path not in ("", "/") or parts.query or parts.fragment
    return f"{parts.scheme}://{host}{f'/{_MASK}' if hidden else ''}"


@dataclass(frozen=True, repr=False)
class OutgoingRequest:
    """An HTTP request ready to send; repr hides the URL's token."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    def __repr__(self) -> str:
        return (
            f"OutgoingRequest(method={self.method!r}, url={mask_url(self.url)!r}, "
            f"headers={self.headers!r}, body=<{len(self.body)} bytes>)"
        )

    __str__ = __repr__


# ---------------------------------------------------------------------------- channels


def _secret_repr(secret: str | None) -> str:
    return "None" if secret is None else repr(_MASK)


class _MaskedRepr:
    """repr/str of a channel dataclass: its fields in order, URL tokens and secrets masked.

    Channel configs end up in logs and error messages, so no subclass writes its own repr:
    it only names which fields are URLs (``_url_fields``) and secrets (``_secret_fields``).
    """

    _url_fields: ClassVar[frozenset[str]] = frozenset({"url"})
    _secret_fields: ClassVar[frozenset[str]] = frozenset({"secret"})

    def __repr__(self) -> str:
        assert dataclasses.is_dataclass(self)
        parts: list[str] = []
        for f in dataclasses.fields(self):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            if f.name in self._url_fields:
                shown = repr(mask_url(value))
            elif f.name in self._secret_fields:
                shown = _secret_repr(value)
            else:
                shown = repr(value)
            parts.append(f"{f.name}={shown}")
        return f"{type(self).__name__}({', '.join(parts)})"

    __str__ = __repr__


@dataclass(frozen=True, repr=False)
class WebhookChannel(_MaskedRepr):
    """Generic JSON webhook, body signed with HMAC-SHA256."""

    id: str
    url: str
    secret: str
    kind: Literal["webhook"] = field(default="webhook", init=False, repr=False)


@dataclass(frozen=True, repr=False)
class DingTalkChannel(_MaskedRepr):
    """DingTalk custom robot; `secret` enables 加签 signing."""

    id: str
    url: str
    secret: str | None = None
    kind: Literal["dingtalk"] = field(default="dingtalk", init=False, repr=False)


@dataclass(frozen=True, repr=False)
class WeComChannel(_MaskedRepr):
    """WeCom (企业微信) group robot; the key in its URL is the secret."""

    id: str
    url: str
    kind: Literal["wecom"] = field(default="wecom", init=False, repr=False)


@dataclass(frozen=True, repr=False)
class FeishuChannel(_MaskedRepr):
    """Feishu/Lark custom bot; `card` sends an interactive card instead of text."""

    id: str
    url: str
    secret: str | None = None
    card: bool = True
    kind: Literal["feishu"] = field(default="feishu", init=False, repr=False)


@dataclass(frozen=True, repr=False)
class SlackChannel(_MaskedRepr):
    """Slack incoming webhook; the whole URL is the secret."""

    id: str
    url: str
    kind: Literal["slack"] = field(default="slack", init=False, repr=False)


@dataclass(frozen=True, repr=False)
class EmailChannel(_MaskedRepr):
    """SMTP delivery settings; the password never appears in repr/str."""

    _secret_fields = frozenset({"password"})

    id: str
    sender: str
    recipients: tuple[str, ...]
    host: str = "localhost"
    port: int = 25
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    kind: Literal["email"] = field(default="email", init=False, repr=False)


HttpChannel: TypeAlias = (
    WebhookChannel | DingTalkChannel | WeComChannel | FeishuChannel | SlackChannel
)
Channel: TypeAlias = HttpChannel | EmailChannel

# ---------------------------------------------------------------------------- helpers


def _title(
    items: list[AlertPayload],
    lang: str,
    kinds: Mapping[str, NotifyKind] | None,
    names: Mapping[str, str] | None,
) -> str:
    if len(items) == 1:
        kind = kinds.get(items[0].alert_id) if kinds else None
        return render_title(items[0], lang, kind=kind, names=names)
    return render_group_title(items, lang, kinds=kinds)


def _text(
    items: list[AlertPayload],
    lang: str,
    link: str | None,
    fmt: Fmt,
    kinds: Mapping[str, NotifyKind] | None,
    names: Mapping[str, str] | None,
) -> str:
    if len(items) == 1:
        kind = kinds.get(items[0].alert_id) if kinds else None
        return render_text(items[0], lang, link, kind=kind, fmt=fmt, names=names)
    return render_group_text(items, lang, link, kinds=kinds, fmt=fmt, names=names)


@dataclass(frozen=True)
class _Content:
    """One message rendered for every channel kind; the builders below only package it."""

    title: str
    text: Callable[[Fmt, str | None], str]  # (format, link) -> text, user data escaped
    body: Callable[[], bytes]  # the generic webhook body
    template: str  # Feishu card header colour


def _alert_content(
    alerts: Alerts,
    lang: str,
    kinds: Mapping[str, NotifyKind] | None,
    names: Mapping[str, str] | None,
) -> _Content:
    items = alert_list(alerts)
    return _Content(
        title=_title(items, lang, kinds, names),
        text=lambda fmt, link: _text(items, lang, link, fmt, kinds, names),
        body=lambda: webhook_body(alerts),
        template=_feishu_template(items, kinds),
    )


def _incident_content(incident: IncidentPayload, lang: str) -> _Content:
    if incident.status == "resolved":
        template = "green"
    else:
        # Same colours as the dashboard banner: red when KPIs stopped, orange otherwise.
        template = "red" if incident.kind == STALL else "orange"
    return _Content(
        title=render_incident_title(incident, lang),
        text=lambda fmt, link: render_incident_text(incident, lang, link, fmt=fmt),
        body=incident.to_json,
        template=template,
    )


def _headers(delivery_key: str | None) -> dict[str, str]:
    headers = {"Content-Type": JSON_CONTENT_TYPE}
    if delivery_key is not None:
        headers[DELIVERY_HEADER] = delivery_key
    return headers


def _epoch_ms(now: datetime) -> int:
    # Integer arithmetic: float timestamps can be off by one millisecond and break signatures.
    return (now - _EPOCH) // timedelta(milliseconds=1)


def _truncate_utf8(text: str, limit: int) -> str:
    """Cut to at most `limit` UTF-8 bytes on a character boundary, marking the cut."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - len("…".encode())].decode(errors="ignore") + "…"


def _append_query(url: str, params: Mapping[str, str]) -> str:
    sep = "&" if urllib.parse.urlsplit(url).query else ("" if url.endswith("?") else "?")
    return url + sep + "&".join(f"{k}={v}" for k, v in params.items())


# ---------------------------------------------------------------------------- webhook


def build_webhook(channel: WebhookChannel, alerts: Alerts, *, delivery_key: str) -> OutgoingRequest:
    """Generic webhook POST: JSON body, HMAC signature and idempotency key headers."""
    return _signed_post(channel, webhook_body(alerts), delivery_key)


def _signed_post(channel: WebhookChannel, body: bytes, delivery_key: str) -> OutgoingRequest:
    headers = _headers(delivery_key)
    headers[SIGNATURE_HEADER] = sign_body(channel.secret, body)
    return OutgoingRequest("POST", channel.url, headers, body)


# ---------------------------------------------------------------------------- DingTalk

# DingTalk rejects oversized markdown; stay well below its documented 20,000-byte limit.
DINGTALK_MAX_BYTES: Final = 18_000


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk 加签: urlencode(base64(HMAC-SHA256(key=secret, msg=f"{ts}\\n{secret}")))."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest).decode())


def build_dingtalk(
    channel: DingTalkChannel,
    alerts: Alerts,
    *,
    lang: str,
    link: str | None,
    now: datetime,
    delivery_key: str | None = None,
    kinds: Mapping[str, NotifyKind] | None = None,
    names: Mapping[str, str] | None = None,
) -> OutgoingRequest:
    """DingTalk robot markdown message; signed in the URL when the channel has a secret."""
    return _dingtalk(channel, _alert_content(alerts, lang, kinds, names), link, now, delivery_key)


def _dingtalk(
    channel: DingTalkChannel,
    content: _Content,
    link: str | None,
    now: datetime,
    delivery_key: str | None,
) -> OutgoingRequest:
    text = content.text("markdown", link)
    body = dumps(
        {
            "msgtype": "markdown",
            "markdown": {"title": content.title, "text": _truncate_utf8(text, DINGTALK_MAX_BYTES)},
        }
    )
    url = channel.url
    if channel.secret:
        ts = _epoch_ms(now)
        url = _append_query(url, {"timestamp": str(ts), "sign": dingtalk_sign(channel.secret, ts)})
    return OutgoingRequest("POST", url, _headers(delivery_key), body)


# ---------------------------------------------------------------------------- WeCom

# WeCom robots reject markdown content over 4096 UTF-8 bytes.
WECOM_MAX_BYTES: Final = 4096


def build_wecom(
    channel: WeComChannel,
    alerts: Alerts,
    *,
    lang: str,
    link: str | None,
    delivery_key: str | None = None,
    kinds: Mapping[str, NotifyKind] | None = None,
    names: Mapping[str, str] | None = None,
) -> OutgoingRequest:
    """WeCom group robot markdown message."""
    return _wecom(channel, _alert_content(alerts, lang, kinds, names), link, delivery_key)


def _wecom(
    channel: WeComChannel, content: _Content, link: str | None, delivery_key: str | None
) -> OutgoingRequest:
    text = _truncate_utf8(content.text("markdown", link), WECOM_MAX_BYTES)
    body = dumps({"msgtype": "markdown", "markdown": {"content": text}})
    return OutgoingRequest("POST", channel.url, _headers(delivery_key), body)


# ---------------------------------------------------------------------------- Feishu / Lark


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu/Lark: base64(HMAC-SHA256(key=f"{ts}\\n{secret}", msg=b""))."""
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def _feishu_template(items: list[AlertPayload], kinds: Mapping[str, NotifyKind] | None) -> str:
    firing = [a for a in items if (kinds or {}).get(a.alert_id, a.status) != "resolved"]
    return "red" if firing else "green"


def build_feishu(
    channel: FeishuChannel,
    alerts: Alerts,
    *,
    lang: str,
    link: str | None,
    now: datetime,
    delivery_key: str | None = None,
    kinds: Mapping[str, NotifyKind] | None = None,
    names: Mapping[str, str] | None = None,
) -> OutgoingRequest:
    """Feishu/Lark bot message: interactive card (lark_md) or plain text; signed in the body."""
    content = _alert_content(alerts, lang, kinds, names)
    return _feishu(channel, content, lang, link, now, delivery_key)


def _feishu(
    channel: FeishuChannel,
    content: _Content,
    lang: str,
    link: str | None,
    now: datetime,
    delivery_key: str | None,
) -> OutgoingRequest:
    payload: dict[str, Any] = {}
    if channel.secret:
        ts = (now - _EPOCH) // timedelta(seconds=1)
        payload["timestamp"] = str(ts)
        payload["sign"] = feishu_sign(channel.secret, ts)
    if channel.card:
        # The button carries the link, so the card text itself goes without it.
        elements: list[dict[str, Any]] = [
            {
                "tag": "div",
                "text": {"tag": "lark_md", "content": content.text("markdown", None)},
            }
        ]
        if link:
            label = "查看详情" if normalize_lang(lang) == "zh-CN" else "Open dashboard"
            elements.append(
                {
                    "tag": "action",
                    "actions": [
                        {
                            "tag": "button",
                            "text": {"tag": "plain_text", "content": label},
                            "url": link,
                            "type": "primary",
                        }
                    ],
                }
            )
        payload["msg_type"] = "interactive"
        payload["card"] = {
            "config": {"wide_screen_mode": True},
            "header": {
                "title": {"tag": "plain_text", "content": content.title},
                "template": content.template,
            },
            "elements": elements,
        }
    else:
        payload["msg_type"] = "text"
        payload["content"] = {"text": content.text("plain", link)}
    return OutgoingRequest("POST", channel.url, _headers(delivery_key), dumps(payload))


# ---------------------------------------------------------------------------- Slack

# Slack limits: header text 150 chars, section text 3000 chars.
_SLACK_HEADER_MAX: Final = 150
_SLACK_SECTION_MAX: Final = 3000


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_slack(
    channel: SlackChannel,
    alerts: Alerts,
    *,
    lang: str,
    link: str | None,
    delivery_key: str | None = None,
    kinds: Mapping[str, NotifyKind] | None = None,
    names: Mapping[str, str] | None = None,
) -> OutgoingRequest:
    """Slack incoming webhook: `text` fallback plus header and mrkdwn section blocks."""
    return _slack(channel, _alert_content(alerts, lang, kinds, names), link, delivery_key)


def _slack(
    channel: SlackChannel, content: _Content, link: str | None, delivery_key: str | None
) -> OutgoingRequest:
    title = content.title
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(title, _SLACK_HEADER_MAX)}},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": _cut(content.text("slack", link), _SLACK_SECTION_MAX),
            },
        },
    ]
    body = dumps({"text": title, "blocks": blocks})
    return OutgoingRequest("POST", channel.url, _headers(delivery_key), body)


# ---------------------------------------------------------------------------- email


def _header_safe(text: str) -> str:
    # Header injection guard: EmailMessage would raise on CR/LF; user ids must not break mail.
    return " ".join(text.split())


def build_email(
    alerts: Alerts,
    lang: str,
    link: str | None,
    sender: str,
    recipients: Sequence[str],
    *,
    now: datetime | None = None,
    delivery_key: str | None = None,
    kinds: Mapping[str, NotifyKind] | None = None,
    names: Mapping[str, str] | None = None,
) -> EmailMessage:
    """Localized email with text and HTML alternatives; HTML escapes all user data.

    `now` sets the Date header and `delivery_key` a deterministic Message-ID and
    `X-KPI-Delivery`, so a resent mail is recognizably the same one.
    """
    content = _alert_content(alerts, lang, kinds, names)
    return _email(content, lang, link, sender, recipients, now, delivery_key)


def _email(
    content: _Content,
    lang: str,
    link: str | None,
    sender: str,
    recipients: Sequence[str],
    now: datetime | None,
    delivery_key: str | None,
) -> EmailMessage:
    if not recipients:
        raise ValueError("no recipients")
    msg = EmailMessage()
    msg["Subject"] = _header_safe(content.title)
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    if now is not None:
        msg["Date"] = format_datetime(now.astimezone(UTC))
    if delivery_key is not None:
        msg["Message-ID"] = f"<{delivery_key}@kpi-notify>"
        msg[DELIVERY_HEADER] = delivery_key
    msg.set_content(content.text("plain", link))
    lang_attr = html.escape(normalize_lang(lang), quote=True)
    html_body = content.text("html", link)
    msg.add_alternative(
        f'<!DOCTYPE html>\n<html lang="{lang_attr}"><head><meta charset="utf-8"></head>'
        f"<body>\n{html_body}\n</body></html>\n",
        subtype="html",
    )
    return msg


# ---------------------------------------------------------------------------- dispatch


def build_request(
    channel: HttpChannel,
    alerts: Alerts,
    *,
    lang: str,
    link: str | None,
    now: datetime,
    delivery_key: str,
    kinds: Mapping[str, NotifyKind] | None = None,
    names: Mapping[str, str] | None = None,
) -> OutgoingRequest:
    """Build the request for any HTTP channel (email goes through `build_email`)."""
    content = _alert_content(alerts, lang, kinds, names)
    return _request(channel, content, lang, link, now, delivery_key)


def build_incident_delivery(
    channel: Channel,
    incident: IncidentPayload,
    *,
    lang: str,
    link: str | None,
    now: datetime,
    delivery_key: str,
) -> OutgoingRequest | EmailMessage:
    """The request (or email) that tells a channel's admins about an incident notice."""
    content = _incident_content(incident, lang)
    if isinstance(channel, EmailChannel):
        return _email(content, lang, link, channel.sender, channel.recipients, now, delivery_key)
    return _request(channel, content, lang, link, now, delivery_key)


def _request(
    channel: HttpChannel,
    content: _Content,
    lang: str,
    link: str | None,
    now: datetime,
    delivery_key: str,
) -> OutgoingRequest:
    if isinstance(channel, WebhookChannel):
        return _signed_post(channel, content.body(), delivery_key)
    if isinstance(channel, DingTalkChannel):
        return _dingtalk(channel, content, link, now, delivery_key)
    if isinstance(channel, WeComChannel):
        return _wecom(channel, content, link, delivery_key)
    if isinstance(channel, FeishuChannel):
        return _feishu(channel, content, lang, link, now, delivery_key)
    return _slack(channel, content, link, delivery_key)
