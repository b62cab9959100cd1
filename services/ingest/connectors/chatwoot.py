"""Chatwoot: account webhook payloads (pure).

Shaped as Chatwoot builds them: app/listeners/webhook_listener.rb merges ``event`` (and for
conversation updates ``changed_attributes``, a list of ``{attr: {previous_value,
current_value}}`` from base_listener.rb) into ``Conversation#webhook_data``
(Conversations::EventDataPresenter#push_data: ``id`` is the display id, ``meta.assignee``)
or ``Message#webhook_data`` (app/models/message.rb: ``message_type``, ``private``,
``sender`` as User#webhook_data ``{id, name, email, type: "user"}``, ``conversation``). A
CSAT answer is a ``message_updated`` of the ``input_csat`` message whose
``content_attributes.submitted_values.csat_survey_response.rating`` is 1..5.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from services.ingest.connectors.base import (
    CUSTOMER_MESSAGE,
    EVENT_NOT_USED,
    NO_AGENT,
    NOT_A_RATING,
    NOT_FIRST_REPLY,
    PRIVATE_MESSAGE,
    RATING,
    STATUS_NOT_COUNTED,
    Agent,
    Change,
    Translation,
    as_object,
    flag,
    ignore,
    optional_object,
    optional_text,
    required_text,
    stamp,
    timestamp,
    translation,
)
from shared.events import WHOLE_MESSAGE

# Message#message_type: the enum name in webhook_data, its number in push_event_data.
_OUTGOING: Final = ("outgoing", "1")
_INCOMING: Final = ("incoming", "0")
_SAME_REPLY: Final = dt.timedelta(seconds=1)


def _ticket_id(conversation: Mapping[str, Any], path: str) -> str:
    # The display id is per account; the inbox (account-scoped) makes it unique overall.
    inbox = required_text(conversation.get("inbox_id"), f"{path}inbox_id")
    return f"chatwoot:{inbox}:{required_text(conversation.get('id'), f'{path}id')}"


def _user(value: object, path: str) -> Agent | None:
    user = optional_object(value, path)
    if optional_text(user.get("type"), f"{path}.type") not in (None, "user"):
        return None  # an agent bot or the contact: not a specialist
    user_id = optional_text(user.get("id"), f"{path}.id")
    if user_id is None:
        return None
    email = optional_text(user.get("email"), f"{path}.email")
    return Agent("chatwoot", user_id, email, optional_text(user.get("name"), f"{path}.name"))


def _changed(body: Mapping[str, Any], attribute: str) -> Mapping[str, Any] | None:
    changes = body.get("changed_attributes") or []
    for entry in changes if isinstance(changes, list) else []:
        if isinstance(entry, Mapping) and isinstance(entry.get(attribute), Mapping):
            found: Mapping[str, Any] = entry[attribute]
            return found
    return None


def _conversation(event: str, body: Mapping[str, Any]) -> Translation:
    tid = _ticket_id(body, "")
    meta = optional_object(body.get("meta"), "meta")
    assignee = _user(meta.get("assignee"), "meta.assignee")
    if event == "conversation_created":
        at = timestamp(body.get("created_at"), "created_at")
        channel = optional_text(body.get("channel"), "channel")
        return translation([Change("ticket.created", tid, at, (), assignee, channel=channel)])
    at = timestamp(body.get("updated_at"), "updated_at")
    if event == "conversation_updated":
        moved = _changed(body, "assignee_id")
        if moved is None or moved.get("current_value") is None:
            return ignore(EVENT_NOT_USED)
        key = assignee.key if assignee else ""
        return translation([Change("ticket.assigned", tid, at, (key, stamp(at)), assignee)])
    status = optional_text(body.get("status"), "status")
    before = _changed(body, "status") or {}
    if status == "resolved":
        return translation(
            [Change("ticket.closed", tid, at, (stamp(at),), assignee, resolved=True)]
        )
    if before.get("previous_value") == "resolved":
        return translation([Change("ticket.reopened", tid, at, (stamp(at),))])
    return ignore(STATUS_NOT_COUNTED)


def _reply(body: Mapping[str, Any]) -> Translation:
    kind = optional_text(body.get("message_type"), "message_type")
    if kind in _INCOMING:
        return ignore(CUSTOMER_MESSAGE)
    if kind not in _OUTGOING:
        return ignore(EVENT_NOT_USED)  # activity and template messages
    if flag(body.get("private"), "private", default=False):
        return ignore(PRIVATE_MESSAGE)
    author = _user(body.get("sender"), "sender")
    if author is None:
        return ignore(NO_AGENT)  # a bot's or an automation's message
    conversation = as_object(body.get("conversation"), "conversation")
    at = timestamp(body.get("created_at"), "created_at")
    first = conversation.get("first_reply_created_at")
    if first and at - timestamp(first, "conversation.first_reply_created_at") > _SAME_REPLY:
        return ignore(NOT_FIRST_REPLY)
    tid = _ticket_id(conversation, "conversation.")
    message_id = required_text(body.get("id"), "id")
    return translation([Change("ticket.first_response", tid, at, (message_id,), author)])


def _survey(body: Mapping[str, Any]) -> Translation:
    if optional_text(body.get("content_type"), "content_type") != "input_csat":
        return ignore(EVENT_NOT_USED)
    attributes = optional_object(body.get("content_attributes"), "content_attributes")
    submitted = optional_object(attributes.get("submitted_values"), "submitted_values")
    response = optional_object(submitted.get("csat_survey_response"), "csat_survey_response")
    score = RATING.parse(
        response.get("rating"), "content_attributes.submitted_values.csat_survey_response.rating"
    )
    if score is None:
        return ignore(NOT_A_RATING)
    conversation = as_object(body.get("conversation"), "conversation")
    # Dated when the survey was sent: the payload has no answer time, and the message's
    # creation stays the same on every later update of it (delivery status, a new rating).
    at = timestamp(body.get("created_at"), "created_at")
    tid = _ticket_id(conversation, "conversation.")
    survey_id = required_text(body.get("id"), "id")
    return translation([Change("survey.csat", tid, at, (survey_id,), score=score)])


def translate(payload: Mapping[str, Any], received_at: dt.datetime) -> Translation:
    body = as_object(payload, WHOLE_MESSAGE)
    event = required_text(body.get("event"), "event")
    if event in ("conversation_created", "conversation_updated", "conversation_status_changed"):
        return _conversation(event, body)
    if event == "message_created":
        return _reply(body)
    if event == "message_updated":
        return _survey(body)
    return ignore(EVENT_NOT_USED)
