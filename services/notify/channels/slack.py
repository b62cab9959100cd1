"""Slack incoming webhook: text fallback plus header and mrkdwn section blocks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from services.notify.channels.base import OutgoingRequest, SlackChannel, json_headers
from services.notify.channels.content import Content, alert_content
from services.notify.rules import NotifyKind
from shared.webhooks import Alerts, dumps

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
    return slack_request(channel, alert_content(alerts, lang, kinds, names), link, delivery_key)


def slack_request(
    channel: SlackChannel, content: Content, link: str | None, delivery_key: str | None
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
    return OutgoingRequest("POST", channel.url, json_headers(delivery_key), body)
