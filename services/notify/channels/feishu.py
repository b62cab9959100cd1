"""Feishu/Lark custom bot: interactive card or plain text, signed in the body."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from services.notify.channels.base import EPOCH, FeishuChannel, OutgoingRequest, json_headers
from services.notify.channels.content import Content, alert_content
from services.notify.messages import normalize_lang
from services.notify.rules import NotifyKind
from shared.webhooks import Alerts, dumps


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu/Lark: base64(HMAC-SHA256(key=f"{ts}\\n{secret}", msg=b""))."""
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


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
    content = alert_content(alerts, lang, kinds, names)
    return feishu_request(channel, content, lang, link, now, delivery_key)


def feishu_request(
    channel: FeishuChannel,
    content: Content,
    lang: str,
    link: str | None,
    now: datetime,
    delivery_key: str | None,
) -> OutgoingRequest:
    payload: dict[str, Any] = {}
    if channel.secret:
        ts = (now - EPOCH) // timedelta(seconds=1)
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
    return OutgoingRequest("POST", channel.url, json_headers(delivery_key), dumps(payload))
