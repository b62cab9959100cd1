"""Helpdesk webhook requests as each vendor sends them, for the connector tests.

Zendesk and Freshdesk bodies are rendered from the templates in docs/connectors.md (read
from the file, so the tests check exactly what the docs ship). Zammad and Chatwoot bodies are
shaped as their source builds them:
- Zammad: app/jobs/trigger_webhook_job.rb (``default_payload``) and
  app/jobs/trigger_webhook_job/record_payload/{base,ticket,ticket/article}.rb: the record's
  ``attributes_with_association_names`` (sorted), associations owner/customer/created_by/
  updated_by/organization/priority/group (ticket) and created_by/updated_by (article)
  replaced by the associated record's attributes, users without USER_ATTRIBUTE_BLACKLIST;
  an article also carries ``attachments`` and ``accounted_time``; no article is ``{}``.
- Zendesk event subscriptions (``zen:event-type:ticket.*``): developer.zendesk.com
  /api-reference/webhooks/event-types/webhook-event-types/ (the envelope: account_id, detail,
  event, id, subject, time, type, zendesk_event_version) and …/event-types/ticket-events/
  (the ``detail`` properties, in the order listed there, ids as strings, statuses in capitals;
  the ``event`` of each type). The per-type examples of that page are not in the stored copy
  read here; ``event`` follows them as transcribed with their example ids in dust-tt/dust
  front/lib/triggers/built-in-webhooks/zendesk/schemas/{ticket_created,
  ticket_agent_assignment_changed,ticket_comment_added,ticket_status_changed}.ts and, for the
  ticket snapshot of a just-created ticket, hatappo/copy-zendesk-attachments-to-google-drive-by-gas
  README.md (a verbatim copy of the page's attachment_linked_to_comment example).
- Chatwoot: app/listeners/webhook_listener.rb (``webhook_data.merge(event:)``, plus
  ``changed_attributes`` from base_listener.rb), Conversations::EventDataPresenter#push_data
  (conversation), Message#webhook_data, User#webhook_data / #push_event_data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from services.ingest.connectors.signatures import (
    CHATWOOT_SIGNATURE,
    CHATWOOT_TIMESTAMP,
    SECRET_HEADER,
    ZAMMAD_SIGNATURE,
    ZENDESK_SIGNATURE,
    ZENDESK_TIMESTAMP,
    chatwoot_signature,
    zammad_signature,
    zendesk_signature,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "connectors.md"
SECRETS = {
    "zendesk": "dGhpcyBpcyBhIHplbmRlc2sgc2lnbmluZyBzZWNyZXQ=",
    "freshdesk": "fd-3c1b9e0a7d4f4f2c8a55",
    "zammad": "zammad-signature-token-0d6e",
    "chatwoot": "cw-webhook-secret-9f2a",
}
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_.]+)\s*\}\}")


def template(vendor: str) -> str:
    """The JSON body template docs/connectors.md ships for ``vendor``."""
    text = DOCS.read_text()
    found = re.search(rf"<!-- template: {vendor} -->\s*```json\n(.*?)```", text, re.S)
    assert found, f"docs/connectors.md has no template for {vendor}"
    return found.group(1)


def render(vendor: str, kpi_event: str, values: dict[str, str], **overrides: str) -> bytes:
    """The body the vendor sends: its placeholders replaced, unknown ones empty, as they do.

    ``overrides`` rewrites a constant of the template (``resolved``, ``rating``) the way the
    docs tell the admin to.
    """
    text = template(vendor).replace(
        '"kpi_event": "ticket_created"', f'"kpi_event": "{kpi_event}"', 1
    )
    if "rating" in overrides:
        text = text.replace('"rating": "5"', f'"rating": "{overrides["rating"]}"')
    if "resolved" in overrides:
        text = text.replace(
            f'"kpi_event": "{kpi_event}",',
            f'"kpi_event": "{kpi_event}",\n  "resolved": {overrides["resolved"]},',
        )
    rendered = _PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), text)
    assert "{{" not in rendered
    orjson.loads(rendered)  # the template must stay valid JSON once rendered
    return rendered.encode()


def placeholders(vendor: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template(vendor)))


@dataclass
class Request:
    """One webhook request: its body and the headers that authenticate it."""

    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    note: str = ""


def _unix(moment: dt.datetime) -> str:
    return str(int(moment.timestamp()))


def sign(vendor: str, body: bytes, now: dt.datetime, secret: str | None = None) -> dict[str, str]:
    """Headers as the vendor computes them (``now``: the signing time)."""
    key = (secret or SECRETS[vendor]).encode()
    headers = {"Content-Type": "application/json"}
    if vendor == "zendesk":
        stamp = now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        headers[ZENDESK_TIMESTAMP] = stamp
        headers[ZENDESK_SIGNATURE] = zendesk_signature(key, stamp, body)
    elif vendor == "chatwoot":
        stamp = _unix(now)
        headers[CHATWOOT_TIMESTAMP] = stamp
        headers[CHATWOOT_SIGNATURE] = chatwoot_signature(key, stamp, body)
    elif vendor == "zammad":
        headers[ZAMMAD_SIGNATURE] = zammad_signature(key, body)
        headers["X-Zammad-Trigger"] = "KPI platform"
        headers["X-Zammad-Delivery"] = "c6a0f8d4-5f8a-4b6b-9a57-3f1f0c2f4e21"
    else:
        headers[SECRET_HEADER] = secret or SECRETS[vendor]
    return headers


def zulu(moment: dt.datetime) -> str:
    """Rails' JSON time: UTC with milliseconds."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


def iso_minute(moment: dt.datetime) -> str:
    """Zendesk's ``*_at_with_timestamp`` rendering (ISO 8601 UTC, seconds)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------- Zendesk event subscriptions


def zendesk_detail(
    ticket_id: str,
    *,
    status: str,
    created_at: dt.datetime,
    updated_at: dt.datetime,
    assignee_id: str | None,
    actor_id: str,
    channel: str = "web_service",
) -> dict[str, Any]:
    """The ticket snapshot of a ticket event (``detail``): every documented property."""
    return {
        "actor_id": actor_id,
        "assignee_id": assignee_id,
        "brand_id": "8447346621310",
        "created_at": iso_minute(created_at),
        "custom_status": "8447320465790",
        "description": "The printer is on fire",
        "external_id": None,
        "form_id": "8646151517822",
        "group_id": "8447320466430",
        "id": ticket_id,
        "is_public": True,
        "organization_id": None,
        "priority": None,
        "requester_id": "8447388090494",
        "status": status,
        "subject": "Printer on fire",
        "submitter_id": "8447388090494",
        "tags": None,
        "type": None,
        "updated_at": iso_minute(updated_at),
        "via": {"channel": channel},
    }


def zendesk_event(
    kind: str, detail: dict[str, Any], event: dict[str, Any], at: dt.datetime
) -> bytes:
    """A Zendesk event-subscription request body (``kind`` after ``zen:event-type:``).

    ``id`` is the event's own uuid (a redelivery repeats the body); ``time`` has Zendesk's
    nanoseconds.
    """
    seed = f"{kind}/{detail['id']}/{at.isoformat()}".encode()
    event_uuid = str(uuid.UUID(bytes=hashlib.sha256(seed).digest()[:16], version=4))
    return orjson.dumps(
        {
            "account_id": 22129848,
            "detail": detail,
            "event": event,
            "id": event_uuid,
            "subject": f"zen:ticket:{detail['id']}",
            "time": at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + "672717030Z",
            "type": f"zen:event-type:{kind}",
            "zendesk_event_version": "2022-11-06",
        }
    )


def zendesk_comment(
    comment_id: str, *, author_id: str, name: str, staff: bool, public: bool
) -> dict[str, Any]:
    """``event`` of ticket.comment_added."""
    return {
        "comment": {
            "author": {"id": author_id, "is_staff": staff, "name": name},
            "body": "Thanks, we are on it." if staff else "It is still on fire.",
            "id": comment_id,
            "is_public": public,
        }
    }


# ---------------------------------------------------------------------------- Zammad


def zammad_user(user_id: int, login: str, first: str, last: str, email: str) -> dict[str, Any]:
    """User attributes as the payload carries them (blacklisted ones removed)."""
    return {
        "active": True,
        "address": None,
        "created_at": "2025-01-10T08:00:00.000Z",
        "created_by_id": 1,
        "department": None,
        "email": email,
        "firstname": first,
        "id": user_id,
        "image": None,
        "lastname": last,
        "login": login,
        "mobile": "",
        "note": "",
        "organization": None,
        "organization_id": None,
        "out_of_office": False,
        "phone": "",
        "role_ids": [2],
        "updated_at": "2025-01-10T08:00:00.000Z",
        "updated_by_id": 1,
        "verified": False,
        "vip": False,
        "web": "",
    }


ZAMMAD_NOBODY = zammad_user(1, "-", "-", "", "")
ZAMMAD_CUSTOMER = zammad_user(5, "nicole@example.com", "Nicole", "Braun", "nicole@example.com")


def zammad_ticket(
    ticket_id: int,
    *,
    state: str,
    owner: dict[str, Any],
    created_at: dt.datetime,
    updated_at: dt.datetime,
    updated_by: dict[str, Any] | None = None,
    first_response_at: dt.datetime | None = None,
    close_at: dt.datetime | None = None,
    last_close_at: dt.datetime | None = None,
    last_owner_update_at: dt.datetime | None = None,
) -> dict[str, Any]:
    def t(moment: dt.datetime | None) -> str | None:
        return zulu(moment) if moment else None

    state_id = {"new": 1, "open": 2, "pending reminder": 3, "closed": 4, "merged": 5}[state]
    ticket: dict[str, Any] = {
        "article_count": 2,
        "close_at": t(close_at),
        "close_escalation_at": None,
        "close_in_min": None,
        "create_article_sender": "Customer",
        "create_article_sender_id": 2,
        "create_article_type": "email",
        "create_article_type_id": 1,
        "created_at": zulu(created_at),
        "created_by": ZAMMAD_CUSTOMER,
        "created_by_id": 5,
        "customer": ZAMMAD_CUSTOMER,
        "customer_id": 5,
        "escalation_at": None,
        "first_response_at": t(first_response_at),
        "group": {"active": True, "id": 1, "name": "Users", "note": "Standard Group/Pool"},
        "group_id": 1,
        "id": ticket_id,
        "last_close_at": t(last_close_at),
        "last_contact_agent_at": t(first_response_at),
        "last_contact_at": zulu(updated_at),
        "last_contact_customer_at": zulu(created_at),
        "last_owner_update_at": t(last_owner_update_at),
        "note": None,
        "number": f"3{ticket_id:05d}",
        "organization": {},
        "organization_id": None,
        "owner": owner,
        "owner_id": owner["id"],
        "pending_time": None,
        "preferences": {"channel_id": 3},
        "priority": {"id": 2, "name": "2 normal", "ui_color": None, "ui_icon": None},
        "priority_id": 2,
        "state": state,
        "state_id": state_id,
        "time_unit": None,
        "title": "Printer on fire",
        "type": None,
        "updated_at": zulu(updated_at),
        "updated_by": updated_by or owner,
        "updated_by_id": (updated_by or owner)["id"],
    }
    return dict(sorted(ticket.items()))


def zammad_article(
    article_id: int,
    ticket_id: int,
    *,
    sender: str,
    author: dict[str, Any],
    created_at: dt.datetime,
    internal: bool = False,
) -> dict[str, Any]:
    article = {
        "accounted_time": 0,
        "attachments": [],
        "body": "Thanks, we are on it." if sender == "Agent" else "It is still on fire.",
        "cc": None,
        "content_type": "text/plain",
        "created_at": zulu(created_at),
        "created_by": author,
        "created_by_id": author["id"],
        "from": author["email"],
        "id": article_id,
        "in_reply_to": None,
        "internal": internal,
        "message_id": None,
        "origin_by_id": None,
        "preferences": {},
        "references": None,
        "reply_to": None,
        "sender": sender,
        "sender_id": {"Agent": 1, "Customer": 2, "System": 3}[sender],
        "subject": "Printer on fire",
        "ticket_id": ticket_id,
        "to": "support@example.com",
        "type": "note" if internal else "email",
        "type_id": 10 if internal else 1,
        "updated_at": zulu(created_at),
        "updated_by": author,
        "updated_by_id": author["id"],
    }
    return dict(sorted(article.items()))


def zammad_body(ticket: dict[str, Any], article: dict[str, Any] | None = None) -> bytes:
    # UserAgent.post(json: true): params.to_json (Rails' compact encoding).
    return orjson.dumps({"ticket": ticket, "article": article or {}})


# -------------------------------------------------------------------------- Chatwoot

CHATWOOT_CONTACT = {
    "additional_attributes": {},
    "custom_attributes": {},
    "email": "nicole@example.com",
    "id": 31,
    "identifier": None,
    "name": "Nicole Braun",
    "phone_number": None,
    "thumbnail": "",
    "type": "contact",
}


def chatwoot_agent_push(user_id: int, name: str) -> dict[str, Any]:
    """User#push_event_data (conversation meta.assignee)."""
    return {
        "availability_status": "online",
        "available_name": name,
        "avatar_url": "",
        "id": user_id,
        "name": name,
        "thumbnail": "",
        "type": "user",
    }


def chatwoot_agent_webhook(user_id: int, name: str, email: str) -> dict[str, Any]:
    """User#webhook_data (a message's sender)."""
    return {"email": email, "id": user_id, "name": name, "type": "user"}


def chatwoot_conversation(
    display_id: int,
    *,
    inbox_id: int,
    status: str,
    assignee: dict[str, Any] | None,
    created_at: dt.datetime,
    updated_at: dt.datetime,
    first_reply_created_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """Conversation#webhook_data (Conversations::EventDataPresenter#push_data)."""
    return {
        "additional_attributes": {"browser": {"browser_name": "Firefox"}},
        "can_reply": True,
        "channel": "Channel::WebWidget",
        "contact_inbox": {"contact_id": 31, "hmac_verified": False, "id": 40,
                          "inbox_id": inbox_id, "source_id": "b1c2d3e4"},
        "id": display_id,
        "inbox_id": inbox_id,
        "messages": [],
        "labels": [],
        "meta": {
            "sender": CHATWOOT_CONTACT,
            "assignee": assignee,
            "assignee_type": "User" if assignee else None,
            "team": None,
            "hmac_verified": False,
        },
        "status": status,
        "custom_attributes": {},
        "snoozed_until": None,
        "unread_count": 0,
        "first_reply_created_at": zulu(first_reply_created_at) if first_reply_created_at else None,
        "priority": None,
        "waiting_since": 0,
        "agent_last_seen_at": 0,
        "contact_last_seen_at": 0,
        "last_activity_at": int(updated_at.timestamp()),
        "timestamp": int(updated_at.timestamp()),
        "created_at": int(created_at.timestamp()),
        "updated_at": updated_at.timestamp(),
    }  # fmt: skip


def chatwoot_event(
    event: str, conversation: dict[str, Any], changed: dict[str, tuple[Any, Any]] | None = None
) -> bytes:
    payload = {**conversation, "event": event}
    if changed is not None:
        payload["changed_attributes"] = [
            {k: {"previous_value": v[0], "current_value": v[1]}} for k, v in changed.items()
        ]
    return orjson.dumps(payload)


def chatwoot_message(
    event: str,
    message_id: int,
    conversation: dict[str, Any],
    *,
    message_type: str,
    sender: dict[str, Any] | None,
    created_at: dt.datetime,
    private: bool = False,
    content_type: str = "text",
    content_attributes: dict[str, Any] | None = None,
) -> bytes:
    """Message#webhook_data merged with ``event``."""
    return orjson.dumps(
        {
            "account": {"id": 1, "name": "Acme Support"},
            "additional_attributes": {},
            "content_attributes": content_attributes or {},
            "content_type": content_type,
            "content": "How did we do?" if content_type == "input_csat" else "Hello",
            "conversation": conversation,
            "created_at": zulu(created_at),
            "id": message_id,
            "inbox": {"id": conversation["inbox_id"], "name": "Website"},
            "message_type": message_type,
            "private": private,
            "sender": sender,
            "source_id": None,
            "event": event,
        }
    )
