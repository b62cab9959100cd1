"""Pure payload builders and signatures for every notification channel (no I/O).

One module per channel kind; `dispatch` picks the builder for a channel and `sender` sends
what they build. The names below are the package's interface.
"""

from __future__ import annotations

from services.notify.channels.base import (
    JSON_CONTENT_TYPE,
    Channel,
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    HttpChannel,
    OutgoingRequest,
    SlackChannel,
    WebhookChannel,
    WeComChannel,
    mask_url,
)
from services.notify.channels.content import (
    make_digest_payload,
    make_incident_payload,
    make_payload,
    make_reminder_payload,
)
from services.notify.channels.dingtalk import DINGTALK_MAX_BYTES, build_dingtalk, dingtalk_sign
from services.notify.channels.dispatch import (
    build_digest_delivery,
    build_incident_delivery,
    build_probe_delivery,
    build_reminder_delivery,
    build_request,
)
from services.notify.channels.feishu import build_feishu, feishu_sign
from services.notify.channels.mail import build_email
from services.notify.channels.probe import make_probe_payload
from services.notify.channels.slack import build_slack
from services.notify.channels.webhook import build_webhook
from services.notify.channels.wecom import WECOM_MAX_BYTES, build_wecom

__all__ = [
    "DINGTALK_MAX_BYTES",
    "JSON_CONTENT_TYPE",
    "WECOM_MAX_BYTES",
    "Channel",
    "DingTalkChannel",
    "EmailChannel",
    "FeishuChannel",
    "HttpChannel",
    "OutgoingRequest",
    "SlackChannel",
    "WeComChannel",
    "WebhookChannel",
    "build_digest_delivery",
    "build_dingtalk",
    "build_email",
    "build_feishu",
    "build_incident_delivery",
    "build_probe_delivery",
    "build_reminder_delivery",
    "build_request",
    "build_slack",
    "build_webhook",
    "build_wecom",
    "dingtalk_sign",
    "feishu_sign",
    "make_digest_payload",
    "make_incident_payload",
    "make_payload",
    "make_probe_payload",
    "make_reminder_payload",
    "mask_url",
]
