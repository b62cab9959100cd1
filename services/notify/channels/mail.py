"""Email notices: text and HTML alternatives, deterministic Message-ID per delivery."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from services.notify.channels.content import Content, alert_content
from services.notify.messages import normalize_lang
from services.notify.rules import NotifyKind
from shared.webhooks import DELIVERY_HEADER, Alerts


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
    content = alert_content(alerts, lang, kinds, names)
    return email_message(content, lang, link, sender, recipients, now, delivery_key)


def email_message(
    content: Content,
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
