"""Zendesk: event-subscription webhooks (``zen:event-type:ticket.*``) beside trigger bodies (pure).

A Zendesk webhook either runs from triggers (our JSON template, ``kpi_event``: templates.py)
or is subscribed to Zendesk events, whose body Zendesk fixes (developer.zendesk.com, "Webhook
event types" and "Ticket events", event version 2022-11-06): ``type``, ``id``, ``time``,
``subject``, ``detail`` (the ticket after the change: ``id``, ``assignee_id``, ``actor_id``,
``status``, ``created_at``, ``updated_at``, ``via.channel``…) and ``event`` (the change:
``current``/``previous``, or ``comment`` with ``is_public`` and ``author.{id, is_staff,
name}``). The same route takes both; a body is told apart by ``kpi_event`` or ``type``.

A change keeps the event id the trigger path gives it (ticket, canonical type, the ticket's
``updated_at`` and, for an assignment, the assignee), so a trigger and an event subscription
reporting the same change count once, as does a redelivery.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from services.ingest.connectors import templates
from services.ingest.connectors.base import (
    CUSTOMER_MESSAGE,
    EVENT_NOT_USED,
    OPENING_COMMENT,
    PRIVATE_MESSAGE,
    STATUS_NOT_COUNTED,
    Agent,
    Change,
    NotUnderstood,
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
from shared.events import UNKNOWN_TYPE, WHOLE_MESSAGE

PREFIX: Final = "zen:event-type:"
CREATED: Final = "zen:event-type:ticket.created"
ASSIGNED: Final = "zen:event-type:ticket.agent_assignment_changed"
COMMENT_ADDED: Final = "zen:event-type:ticket.comment_added"
STATUS_CHANGED: Final = "zen:event-type:ticket.status_changed"
# Zendesk writes the status categories in capitals (NEW, OPEN, PENDING, HOLD, SOLVED, CLOSED).
_SOLVED: Final = "SOLVED"
_CLOSED: Final = "CLOSED"


@dataclass(frozen=True, slots=True)
class _Event:
    """One event-subscription body: the ticket (``detail``) and the change (``event``)."""

    ticket_id: str
    detail: Mapping[str, Any]
    event: Mapping[str, Any]
    time: object

    def updated_at(self) -> dt.datetime:
        """When the ticket changed: ``detail.updated_at`` ({{ticket.updated_at_with_timestamp}}
        of a trigger), else the event's ``time``."""
        if self.detail.get("updated_at") not in (None, ""):
            return timestamp(self.detail.get("updated_at"), "detail.updated_at")
        return timestamp(self.time, "time")

    def user(self, value: object, path: str, name: str | None = None) -> Agent | None:
        """A Zendesk user id as an agent (no e-mail in these bodies); null is nobody."""
        user_id = optional_text(value, path)
        return None if user_id is None else Agent("zendesk", user_id, None, name)

    def assignee(self) -> Agent | None:
        return self.user(self.detail.get("assignee_id"), "detail.assignee_id")


def _created(e: _Event) -> Translation:
    at = timestamp(e.detail.get("created_at"), "detail.created_at")
    via = optional_object(e.detail.get("via"), "detail.via")
    channel = optional_text(via.get("channel"), "detail.via.channel")
    return translation(
        [Change("ticket.created", e.ticket_id, at, (), e.assignee(), channel=channel)]
    )


def _assigned(e: _Event) -> Translation:
    # The new assignee is event.current (null: unassigned, no agent); detail.assignee_id is
    # the same id on the ticket after the change.
    if "current" in e.event:
        agent = e.user(e.event.get("current"), "event.current")
    else:
        agent = e.assignee()
    at = e.updated_at()
    key = agent.key if agent else ""
    return translation([Change("ticket.assigned", e.ticket_id, at, (key, stamp(at)), agent)])


def _comment(e: _Event) -> Translation:
    comment = as_object(e.event.get("comment"), "event.comment")
    if not flag(comment.get("is_public"), "event.comment.is_public", default=False):
        return ignore(PRIVATE_MESSAGE)
    author = optional_object(comment.get("author"), "event.comment.author")
    if not flag(author.get("is_staff"), "event.comment.author.is_staff", default=False):
        return ignore(CUSTOMER_MESSAGE)
    at = e.updated_at()
    created = e.detail.get("created_at")
    # The comment a ticket is created with (its description) arrives as comment_added too; a
    # trigger's "Ticket is Updated" never fires for it, and it answers nobody.
    if created not in (None, "") and at <= timestamp(created, "detail.created_at"):
        return ignore(OPENING_COMMENT)
    name = optional_text(author.get("name"), "event.comment.author.name")
    agent = e.user(author.get("id"), "event.comment.author.id", name)
    # Every public agent comment is a candidate; scoring keeps the earliest per ticket.
    return translation([Change("ticket.first_response", e.ticket_id, at, (stamp(at),), agent)])


def _status(e: _Event) -> Translation:
    current = required_text(e.event.get("current"), "event.current").upper()
    previous = (optional_text(e.event.get("previous"), "event.previous") or "").upper()
    at = e.updated_at()
    if current == _SOLVED and previous != _SOLVED:
        # The solver is the assignee, as for the "solved" trigger; without one, who solved it.
        closer = e.assignee() or e.user(e.detail.get("actor_id"), "detail.actor_id")
        return translation(
            [Change("ticket.closed", e.ticket_id, at, (stamp(at),), closer, resolved=True)]
        )
    if previous == _SOLVED and current not in (_SOLVED, _CLOSED):
        return translation([Change("ticket.reopened", e.ticket_id, at, (stamp(at),))])
    # Closed after solved is the same closure; other moves (new → open, pending…) count for
    # nothing, and a ticket closed without being solved (a merge) is not a resolution.
    return ignore(STATUS_NOT_COUNTED)


_HANDLERS: Final[dict[str, Callable[[_Event], Translation]]] = {
    CREATED: _created,
    ASSIGNED: _assigned,
    COMMENT_ADDED: _comment,
    STATUS_CHANGED: _status,
}


def translate_event(payload: Mapping[str, Any], received_at: dt.datetime) -> Translation:
    """One ``zen:event-type:*`` body; types that carry nothing for a KPI are ignored."""
    body = as_object(payload, WHOLE_MESSAGE)
    kind = required_text(body.get("type"), "type")
    if not kind.startswith(PREFIX):
        raise NotUnderstood(
            "type", f"{kind[:40]!r} is not a Zendesk event type ({PREFIX}…)", UNKNOWN_TYPE
        )
    handler = _HANDLERS.get(kind)
    if handler is None:
        return ignore(EVENT_NOT_USED)
    detail = as_object(body.get("detail"), "detail")
    ticket_id = f"zendesk:{required_text(detail.get('id'), 'detail.id')}"
    event = optional_object(body.get("event"), "event")
    return handler(_Event(ticket_id, detail, event, body.get("time")))


def translate(payload: Mapping[str, Any], received_at: dt.datetime) -> Translation:
    """A Zendesk body: a trigger's (``kpi_event``) or an event subscription's (``type``)."""
    if isinstance(payload, Mapping) and "kpi_event" not in payload and "type" in payload:
        return translate_event(payload, received_at)
    return templates.zendesk(payload, received_at)
