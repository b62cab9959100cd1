"""Channel settings (one dataclass per kind) and the outgoing HTTP request, secrets masked."""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Final, Literal, TypeAlias

from shared.webhooks import DELIVERY_HEADER

JSON_CONTENT_TYPE: Final = "application/json"

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_MASK: Final = "***"


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


def json_headers(delivery_key: str | None) -> dict[str, str]:
    headers = {"Content-Type": JSON_CONTENT_TYPE}
    if delivery_key is not None:
        headers[DELIVERY_HEADER] = delivery_key
    return headers


def epoch_ms(now: datetime) -> int:
    # Integer arithmetic: float timestamps can be off by one millisecond and break signatures.
    return (now - EPOCH) // timedelta(milliseconds=1)


def truncate_utf8(text: str, limit: int) -> str:
    """Cut to at most `limit` UTF-8 bytes on a character boundary, marking the cut."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - len("…".encode())].decode(errors="ignore") + "…"


def append_query(url: str, params: Mapping[str, str]) -> str:
    sep = "&" if urllib.parse.urlsplit(url).query else ("" if url.endswith("?") else "?")
    return url + sep + "&".join(f"{k}={v}" for k, v in params.items())


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
