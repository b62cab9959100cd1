"""Zammad: the default trigger webhook payload ``{"ticket": …, "article": …}`` (pure).

Shaped as Zammad builds it (app/jobs/trigger_webhook_job.rb ``default_payload`` and
record_payload/{base,ticket,ticket/article}.rb): the ticket's attributes with association
names (``state`` is the state's name, ``owner``/``updated_by``/``created_by`` are user
objects), and the article of the change or ``{}``. The payload is the ticket as it is now,
so every delivery yields the events that state implies; ids derived from Zammad's own ids
and times make the repeats of earlier deliveries count once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from services.ingest.connectors.base import (
    CUSTOMER_MESSAGE,
    NOT_FIRST_REPLY,
    PRIVATE_MESSAGE,
    STATUS_NOT_COUNTED,
    Agent,
    Change,
    NotUnderstood,
    Translation,
    as_object,
    flag,
    optional_object,
    optional_text,
    required_text,
    stamp,
    timestamp,
    translation,
)
from shared.events import MISSING_FIELD, WHOLE_MESSAGE

# Zammad's user 1 is "-", the system user an unassigned ticket is owned by.
NOBODY: Final = "1"
# A later reply within this of the recorded first response is the first response itself.
_SAME_REPLY: Final = dt.timedelta(seconds=1)
_REOPENED_AFTER: Final = dt.timedelta(seconds=1)


def _user(value: object, path: str) -> Agent | None:
    user = optional_object(value, path)
    user_id = optional_text(user.get("id"), f"{path}.id")
    if user_id is None or user_id == NOBODY:
        return None
    names = (optional_text(user.get(k), f"{path}.{k}") for k in ("firstname", "lastname"))
    name = " ".join(n for n in names if n) or optional_text(user.get("login"), f"{path}.login")
    return Agent("zammad", user_id, optional_text(user.get("email"), f"{path}.email"), name)


def _time(value: object, path: str) -> dt.datetime | None:
    return None if value is None or value == "" else timestamp(value, path)


def _reply(ticket_id: str, ticket: Mapping[str, Any], article: Mapping[str, Any]) -> Translation:
    sender = optional_text(article.get("sender"), "article.sender")
    if sender != "Agent":
        return Translation((), (CUSTOMER_MESSAGE,))
    if flag(article.get("internal"), "article.internal", default=False):
        return Translation((), (PRIVATE_MESSAGE,))
    at = timestamp(article.get("created_at"), "article.created_at")
    first = _time(ticket.get("first_response_at"), "ticket.first_response_at")
    if first is not None and at - first > _SAME_REPLY:
        return Translation((), (NOT_FIRST_REPLY,))
    article_id = required_text(article.get("id"), "article.id")
    author = _user(article.get("created_by"), "article.created_by")
    return translation([Change("ticket.first_response", ticket_id, at, (article_id,), author)])


def translate(payload: Mapping[str, Any], received_at: dt.datetime) -> Translation:
    body = as_object(payload, WHOLE_MESSAGE)
    ticket = as_object(body.get("ticket"), "ticket")
    if not ticket:
        raise NotUnderstood("ticket", "is empty", MISSING_FIELD)
    tid = f"zammad:{required_text(ticket.get('id'), 'ticket.id')}"
    updated = timestamp(ticket.get("updated_at"), "ticket.updated_at")
    owner = _user(ticket.get("owner"), "ticket.owner")
    channel = optional_text(ticket.get("create_article_type"), "ticket.create_article_type")
    created = timestamp(ticket.get("created_at"), "ticket.created_at")
    # Every delivery repeats these: their content must not change between deliveries (the
    # same id with another content is an event conflict), so no owner on the creation.
    changes = [Change("ticket.created", tid, created, (), None, channel=channel)]
    ignored: list[str] = []
    moved = _time(ticket.get("last_owner_update_at"), "ticket.last_owner_update_at")
    if owner is not None and moved is not None:
        changes.append(Change("ticket.assigned", tid, moved, (owner.key, stamp(moved)), owner))
    # last_close_at is the latest closure (close_at stays the first one).
    closed_at = _time(ticket.get("last_close_at"), "ticket.last_close_at") or _time(
        ticket.get("close_at"), "ticket.close_at"
    )
    state = (optional_text(ticket.get("state"), "ticket.state") or "").lower()
    if state == "closed":
        at = closed_at or updated
        closer = owner or _user(ticket.get("updated_by"), "ticket.updated_by")
        changes.append(Change("ticket.closed", tid, at, (stamp(at),), closer, resolved=True))
    elif state in ("merged", "removed"):
        ignored.append(STATUS_NOT_COUNTED)
    elif closed_at is not None:
        # Open again after a closure: the reopen of that closure, one per closure time.
        # Zammad keeps no reopen time; just after the closure is what is known, and stays
        # the same on every later delivery.
        reopened = closed_at + _REOPENED_AFTER
        changes.append(Change("ticket.reopened", tid, reopened, (stamp(closed_at),)))
    article = optional_object(body.get("article"), "article")
    if article:
        reply = _reply(tid, ticket, article)
        changes += reply.changes
        ignored += reply.ignored
    return translation(changes, ignored)
