"""Which builder packages a notice for a channel: alerts, incidents, reminders and digests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from email.message import EmailMessage

from services.notify.channels.base import (
    Channel,
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    HttpChannel,
    OutgoingRequest,
    WebhookChannel,
    WeComChannel,
)
from services.notify.channels.content import (
    Content,
    alert_content,
    digest_content,
    incident_content,
    reminder_content,
)
from services.notify.channels.dingtalk import dingtalk_request
from services.notify.channels.feishu import feishu_request
from services.notify.channels.mail import email_message
from services.notify.channels.probe import probe_content
from services.notify.channels.slack import slack_request
from services.notify.channels.webhook import signed_post
from services.notify.channels.wecom import wecom_request
from services.notify.egress import Refused
from services.notify.rules import NotifyKind
from shared.webhooks import (
    Alerts,
    ChannelTestPayload,
    DigestPayload,
    IncidentPayload,
    ReminderPayload,
)


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
    content = alert_content(alerts, lang, kinds, names)
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
    content = incident_content(incident, lang)
    return build_content_delivery(channel, content, lang, link, now, delivery_key)


def build_probe_delivery(
    channel: Channel,
    probe: ChannelTestPayload,
    *,
    lang: str,
    link: str | None,
    now: datetime,
    delivery_key: str,
) -> OutgoingRequest | EmailMessage:
    """The request (or email) of a channel test, built like any notice of that channel."""
    return build_content_delivery(
        channel, probe_content(probe, lang), lang, link, now, delivery_key
    )


def build_content_delivery(
    channel: Channel,
    content: Content,
    lang: str,
    link: str | None,
    now: datetime,
    delivery_key: str,
) -> OutgoingRequest | EmailMessage:
    """A rendered notice packaged for any channel kind: an HTTP request, or an email."""
    if isinstance(channel, EmailChannel):
        return email_message(
            content, lang, link, channel.sender, channel.recipients, now, delivery_key
        )
    return _request(channel, content, lang, link, now, delivery_key)


def build_digest_delivery(
    channel: Channel,
    digest: DigestPayload,
    *,
    lang: str,
    link: str | None,
    now: datetime,
    delivery_key: str,
) -> OutgoingRequest | EmailMessage:
    """The request (or email, to the channel's recipients) of a team digest."""
    content = digest_content(digest, lang)
    return build_content_delivery(channel, content, lang, link, now, delivery_key)


def build_reminder_delivery(
    channel: Channel,
    reminder: ReminderPayload,
    *,
    lang: str,
    link: str | None,
    now: datetime,
    delivery_key: str,
    recipients: Sequence[str] | None = None,
) -> OutgoingRequest | EmailMessage:
    """The request (or email) of an appraisal-cycle reminder; ``recipients`` replace an
    email channel's own (the specialist's copy goes to their address)."""
    content = reminder_content(reminder, lang)
    if isinstance(channel, EmailChannel):
        to = channel.recipients if recipients is None else tuple(recipients)
        return email_message(content, lang, link, channel.sender, to, now, delivery_key)
    if recipients is not None:
        # The channel stopped being an email channel after the copy was queued: the
        # specialist's message must not land in the team's chat instead.
        raise Refused("a specialist's reminder is sent by email only")
    return _request(channel, content, lang, link, now, delivery_key)


def _request(
    channel: HttpChannel,
    content: Content,
    lang: str,
    link: str | None,
    now: datetime,
    delivery_key: str,
) -> OutgoingRequest:
    if isinstance(channel, WebhookChannel):
        return signed_post(channel, content.body(), delivery_key)
    if isinstance(channel, DingTalkChannel):
        return dingtalk_request(channel, content, link, now, delivery_key)
    if isinstance(channel, WeComChannel):
        return wecom_request(channel, content, link, delivery_key)
    if isinstance(channel, FeishuChannel):
        return feishu_request(channel, content, lang, link, now, delivery_key)
    return slack_request(channel, content, link, delivery_key)
