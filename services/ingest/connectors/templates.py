"""Zendesk and Freshdesk: bodies rendered from our trigger/automation templates (pure).

Neither vendor has a fixed webhook payload for ticket changes: the admin writes the JSON
body of a trigger (Zendesk) or an automation rule (Freshdesk) with the vendor's
placeholders. docs/connectors.md ships one template per trigger; each carries a constant
``kpi_event`` naming the change the trigger's conditions select, so the translation never
depends on localised texts such as a status name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, Final

from services.ingest.connectors.base import (
    NOT_A_RATING,
    RATING,
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
from shared.events import MISSING_FIELD, UNKNOWN_TYPE, WHOLE_MESSAGE

TICKET_CREATED: Final = "ticket_created"
ASSIGNEE_CHANGED: Final = "assignee_changed"
AGENT_REPLIED: Final = "agent_replied"
SOLVED: Final = "solved"
REOPENED: Final = "reopened"
SATISFACTION: Final = "satisfaction"
FOLLOWUP: Final = "followup"
# Freshdesk sends no time and no delivery id: a byte-identical body for the same ticket and
# family within this window is taken as Freshdesk's retry (5, 35, 95 minutes after a
# failure) of the request first received then, unless another body of the family came in
# between (solved, reopened, solved again: the second solved is a new closure).
REDELIVERY_WINDOW: Final = dt.timedelta(hours=2)
KPI_EVENTS: Final = (
    TICKET_CREATED,
    ASSIGNEE_CHANGED,
    AGENT_REPLIED,
    SOLVED,
    REOPENED,
    SATISFACTION,
    FOLLOWUP,
)


_FAMILY: Final = {
    TICKET_CREATED: "created",
    ASSIGNEE_CHANGED: "assignee",
    AGENT_REPLIED: "reply",
    SOLVED: "status",
    REOPENED: "status",
    SATISFACTION: "satisfaction",
    FOLLOWUP: "followup",
}


def _agent(vendor: str, value: object, path: str) -> Agent | None:
    """``{"id", "email", "name"}`` as rendered; all empty (nobody assigned) is None."""
    data = optional_object(value, path)
    agent_id = optional_text(data.get("id"), f"{path}.id")
    email = optional_text(data.get("email"), f"{path}.email")
    if agent_id is None and email is None:
        return None
    return Agent(vendor, agent_id, email, optional_text(data.get("name"), f"{path}.name"))


class _Body:
    """One rendered template: the fields every ``kpi_event`` reads."""

    def __init__(self, vendor: str, payload: Mapping[str, Any]) -> None:
        body = as_object(payload, WHOLE_MESSAGE)
        self.vendor = vendor
        self.body = body
        kind = required_text(body.get("kpi_event"), "kpi_event")
        if kind not in KPI_EVENTS:
            raise NotUnderstood(
                "kpi_event", f"{kind[:40]!r} is not one of {', '.join(KPI_EVENTS)}", UNKNOWN_TYPE
            )
        self.kind = kind
        self.ticket = as_object(body.get("ticket"), "ticket")
        self.ticket_id = f"{vendor}:{required_text(self.ticket.get('id'), 'ticket.id')}"
        self.assignee = _agent(vendor, self.ticket.get("assignee"), "ticket.assignee")

    def agent(self, key: str) -> Agent | None:
        return _agent(self.vendor, self.body.get(key), key)

    def rating(self) -> int | None:
        survey = as_object(self.body.get("satisfaction"), "satisfaction")
        if "rating" not in survey:
            raise NotUnderstood("satisfaction.rating", "is required", MISSING_FIELD)
        return RATING.parse(survey.get("rating"), "satisfaction.rating")


def _changes(body: _Body, at: dt.datetime, once: tuple[str, ...]) -> Translation:
    """The change of one ``kpi_event``; ``once`` identifies the repeatable ones."""
    tid, kind = body.ticket_id, body.kind
    if kind == ASSIGNEE_CHANGED:
        key = body.assignee.key if body.assignee else ""
        return translation([Change("ticket.assigned", tid, at, (key, *once), body.assignee)])
    if kind == AGENT_REPLIED:
        # Every agent reply is a candidate; scoring counts the earliest as the first response.
        replier = body.agent("replier")
        return translation([Change("ticket.first_response", tid, at, once, replier)])
    if kind == SOLVED:
        resolved = flag(body.body.get("resolved"), "resolved", default=True)
        closer = body.assignee or body.agent("replier")
        return translation([Change("ticket.closed", tid, at, once, closer, resolved=resolved)])
    if kind == REOPENED:
        return translation([Change("ticket.reopened", tid, at, once)])
    if kind == SATISFACTION:
        score = body.rating()
        if score is None:
            return ignore(NOT_A_RATING)
        # One survey per ticket: a rating changed later keeps the first (scoring records the
        # differing copy as an event conflict).
        return translation([Change("survey.csat", tid, at, (), score=score)])
    if kind == FOLLOWUP:
        return translation([Change("ticket.followup", tid, at, once, body.agent("replier"))])
    channel = optional_text(body.ticket.get("via"), "ticket.via")
    return translation([Change("ticket.created", tid, at, (), body.assignee, channel=channel)])


def zendesk(payload: Mapping[str, Any], received_at: dt.datetime) -> Translation:
    """A Zendesk trigger body: times from ``{{ticket.*_at_with_timestamp}}``."""
    body = _Body("zendesk", payload)
    field = "created_at" if body.kind == TICKET_CREATED else "updated_at"
    at = timestamp(body.ticket.get(field), f"ticket.{field}")
    # The update time tells a repeated change apart (solved twice, reassigned back).
    return _changes(body, at, (stamp(at),))


def freshdesk_receipt_key(payload: Mapping[str, Any]) -> tuple[str, str]:
    """(ticket id, family) under which ingest remembers a Freshdesk body's first receipt."""
    body = _Body("freshdesk", payload)
    return body.ticket_id, _FAMILY[body.kind]


def freshdesk(payload: Mapping[str, Any], received_at: dt.datetime) -> Translation:
    """A Freshdesk automation body. Its placeholders carry no time: ``received_at`` is when
    ingest first received this body (``freshdesk_receipt_key``), so a retry gets the same."""
    body = _Body("freshdesk", payload)
    return _changes(body, received_at, (stamp(received_at),))


TRANSLATORS: Final[dict[str, Callable[[Mapping[str, Any], dt.datetime], Translation]]] = {
    "zendesk": zendesk,
    "freshdesk": freshdesk,
}
