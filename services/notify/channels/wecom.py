"""WeCom (企业微信) group robot: markdown message within its byte limit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from services.notify.channels.base import OutgoingRequest, WeComChannel, json_headers, truncate_utf8
from services.notify.channels.content import Content, alert_content
from services.notify.rules import NotifyKind
from shared.webhooks import Alerts, dumps

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
    return wecom_request(channel, alert_content(alerts, lang, kinds, names), link, delivery_key)


def wecom_request(
    channel: WeComChannel, content: Content, link: str | None, delivery_key: str | None
) -> OutgoingRequest:
    text = truncate_utf8(content.text("markdown", link), WECOM_MAX_BYTES)
    body = dumps({"msgtype": "markdown", "markdown": {"content": text}})
    return OutgoingRequest("POST", channel.url, json_headers(delivery_key), body)
