"""Generic JSON webhook: the shared body, HMAC-signed, with the idempotency key header."""

from __future__ import annotations

from services.notify.channels.base import OutgoingRequest, WebhookChannel, json_headers
from shared.webhooks import SIGNATURE_HEADER, Alerts, sign_body, webhook_body


def build_webhook(channel: WebhookChannel, alerts: Alerts, *, delivery_key: str) -> OutgoingRequest:
    """Generic webhook POST: JSON body, HMAC signature and idempotency key headers."""
    return signed_post(channel, webhook_body(alerts), delivery_key)


def signed_post(channel: WebhookChannel, body: bytes, delivery_key: str) -> OutgoingRequest:
    headers = json_headers(delivery_key)
    headers[SIGNATURE_HEADER] = sign_body(channel.secret, body)
    return OutgoingRequest("POST", channel.url, headers, body)
