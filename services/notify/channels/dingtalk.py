"""DingTalk custom robot: markdown message, 加签 signature in the URL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping
from datetime import datetime
from typing import Final

from services.notify.channels.base import (
    DingTalkChannel,
    OutgoingRequest,
    append_query,
    epoch_ms,
    json_headers,
    truncate_utf8,
)
from services.notify.channels.content import Content, alert_content
from services.notify.rules import NotifyKind
from shared.webhooks import Alerts, dumps

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
    return dingtalk_request(
        channel, alert_content(alerts, lang, kinds, names), link, now, delivery_key
    )


def dingtalk_request(
    channel: DingTalkChannel,
    content: Content,
    link: str | None,
    now: datetime,
    delivery_key: str | None,
) -> OutgoingRequest:
    text = content.text("markdown", link)
    body = dumps(
        {
            "msgtype": "markdown",
            "markdown": {"title": content.title, "text": truncate_utf8(text, DINGTALK_MAX_BYTES)},
        }
    )
    url = channel.url
    if channel.secret:
        ts = epoch_ms(now)
        url = append_query(url, {"timestamp": str(ts), "sign": dingtalk_sign(channel.secret, ts)})
    return OutgoingRequest("POST", url, json_headers(delivery_key), body)
