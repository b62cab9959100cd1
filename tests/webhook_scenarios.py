"""One ticket's life per helpdesk, as its webhook requests, with the canonical events it means.

Ticket T (agent Li Na, mapped by alias): created → assigned → customer writes → agent
replies → solved → CSAT (when the vendor has one) → reopened → solved again. Ticket T2 is
handled by Bo Chen, whom no alias maps: created → solved. ``expected`` lists the canonical
events (without ``event_id``/``source``); ``None`` as ``occurred_at`` means "when ingest
received it" (Freshdesk sends no times).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from tests.webhook_payloads import (
    CHATWOOT_CONTACT,
    ZAMMAD_CUSTOMER,
    ZAMMAD_NOBODY,
    chatwoot_agent_push,
    chatwoot_agent_webhook,
    chatwoot_conversation,
    chatwoot_event,
    chatwoot_message,
    iso_minute,
    render,
    zammad_article,
    zammad_body,
    zammad_ticket,
    zammad_user,
    zendesk_comment,
    zendesk_detail,
    zendesk_event,
)

LI_NA = "li.na"
LI_NA_EMAIL = "li.na@example.com"
# Li Na's ids in each helpdesk, and the aliases that map them (Freshdesk: the e-mail).
AGENT_IDS = {"zendesk": "3612", "zammad": "12", "chatwoot": "7"}
ALIASES = {**AGENT_IDS, "email": LI_NA_EMAIL}
BO_CHEN = {"zendesk": "4711", "zammad": "14", "chatwoot": "9", "freshdesk": "bo.chen@example.com"}


@dataclass
class Scenario:
    vendor: str
    bodies: list[bytes]
    expected: list[dict[str, Any]] = field(default_factory=list)
    ticket: str = ""
    unmapped_as: str = ""


def _event(kind: str, ticket: str, at: dt.datetime | None, **fields: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"type": kind, "ticket_id": ticket, "occurred_at": at}
    return {**found, **fields}


def _life(ticket: str, t0: dt.datetime, csat: bool, times: bool = True) -> list[dict[str, Any]]:
    def at(hours: float) -> dt.datetime | None:
        return t0 + dt.timedelta(hours=hours) if times else None

    return [
        _event("ticket.created", ticket, at(0)),
        _event("ticket.assigned", ticket, at(0.25), specialist_id=LI_NA),
        _event("ticket.first_response", ticket, at(2), specialist_id=LI_NA),
        _event("ticket.closed", ticket, at(3), specialist_id=LI_NA, resolved=True),
        *([_event("survey.csat", ticket, at(4), score=5)] if csat else []),
        _event("ticket.reopened", ticket, at(5)),
        _event("ticket.closed", ticket, at(6), specialist_id=LI_NA, resolved=True),
    ]


def zendesk(t0: dt.datetime) -> Scenario:
    def body(kind: str, ticket: str, hours: float, agent: str = "", **extra: str) -> bytes:
        moment = t0 + dt.timedelta(hours=hours)
        values = {
            "ticket.id": ticket,
            "ticket.created_at_with_timestamp": iso_minute(t0),
            "ticket.updated_at_with_timestamp": iso_minute(moment),
            "ticket.via": "Web form",
            "satisfaction.current_rating": extra.pop("rating", "Unoffered"),
        }
        if agent:
            email = LI_NA_EMAIL if agent == AGENT_IDS["zendesk"] else "bo.chen@example.com"
            values |= {"ticket.assignee.id": agent, "ticket.assignee.email": email,
                       "current_user.id": agent, "current_user.email": email}  # fmt: skip
        return render("zendesk", kind, values, **extra)

    li = AGENT_IDS["zendesk"]
    bodies = [
        body("ticket_created", "35436", 0),
        body("assignee_changed", "35436", 0.25, li),
        body("agent_replied", "35436", 2, li),
        body("solved", "35436", 3, li),
        body("satisfaction", "35436", 4, li, rating="Good"),
        body("reopened", "35436", 5, li),
        body("agent_replied", "35436", 5.5, li),  # a later reply: not the first response
        body("solved", "35436", 6, li),
        body("ticket_created", "35437", 0),
        body("solved", "35437", 1, BO_CHEN["zendesk"], resolved="false"),
    ]
    expected = _life("zendesk:35436", t0, csat=True)
    expected.insert(6, _event("ticket.first_response", "zendesk:35436",
                              t0 + dt.timedelta(hours=5.5), specialist_id=LI_NA))  # fmt: skip
    expected[0]["channel"] = "Web form"
    t2 = "zendesk:35437"
    expected += [
        _event("ticket.created", t2, t0, channel="Web form"),
        _event("ticket.closed", t2, t0 + dt.timedelta(hours=1), specialist_id="zendesk:4711",
               resolved=False),
    ]  # fmt: skip
    return Scenario("zendesk", bodies, expected, "zendesk:35436", "zendesk:4711")


def zendesk_events(t0: dt.datetime) -> Scenario:
    """The same life through a webhook subscribed to Zendesk's ticket events (no CSAT event).

    Bodies Zendesk also sends that count for nothing are in it: the customer's opening comment,
    a private note, a customer's reply, new → open, solved → closed, a priority change.
    """
    li, bo, customer = AGENT_IDS["zendesk"], BO_CHEN["zendesk"], "8447388090494"

    def h(hours: float) -> dt.datetime:
        return t0 + dt.timedelta(hours=hours)

    def detail(ticket: str, status: str, hours: float, assignee: str | None, **kw: Any) -> Any:
        actor = kw.pop("actor", assignee or customer)
        return zendesk_detail(ticket, status=status, created_at=t0, updated_at=h(hours),
                              assignee_id=assignee, actor_id=actor, **kw)  # fmt: skip

    def status(ticket: str, before: str, after: str, hours: float, assignee: str | None) -> bytes:
        return zendesk_event("ticket.status_changed", detail(ticket, after, hours, assignee),
                             {"current": after, "previous": before}, h(hours))  # fmt: skip

    def comment(number: str, hours: float, *, staff: bool, public: bool = True) -> bytes:
        author = (li, "Li Na") if staff else (customer, "Nicole Braun")
        state = "OPEN" if hours else "NEW"
        return zendesk_event(
            "ticket.comment_added",
            detail("5158", state, hours, li if hours else None, actor=author[0]),
            zendesk_comment(number, author_id=author[0], name=author[1], staff=staff,
                            public=public),
            h(hours),
        )  # fmt: skip

    bodies = [
        zendesk_event("ticket.created", detail("5158", "NEW", 0, None), {}, t0),
        comment("9001", 0, staff=False),
        zendesk_event("ticket.agent_assignment_changed", detail("5158", "NEW", 0.25, li),
                      {"current": int(li), "previous": None}, h(0.25)),
        comment("9002", 1.5, staff=True, public=False),
        comment("9003", 2, staff=True),
        status("5158", "NEW", "OPEN", 2, li),
        status("5158", "OPEN", "SOLVED", 3, li),
        comment("9004", 5, staff=False),
        status("5158", "SOLVED", "OPEN", 5, li),
        comment("9005", 5.5, staff=True),
        status("5158", "OPEN", "SOLVED", 6, li),
        zendesk_event("ticket.priority_changed", detail("5158", "SOLVED", 6.5, li),
                      {"current": "HIGH", "previous": "NORMAL"}, h(6.5)),
        status("5158", "SOLVED", "CLOSED", 7, li),
        zendesk_event("ticket.created", detail("5159", "OPEN", 0, bo, channel="mail"), {}, t0),
        # Bo opened it for a caller: the ticket's first comment is his, and answers nobody.
        zendesk_event("ticket.comment_added", detail("5159", "OPEN", 0, bo, channel="mail"),
                      zendesk_comment("9101", author_id=bo, name="Bo Chen", staff=True,
                                      public=True), t0),
        status("5159", "OPEN", "SOLVED", 1, bo),
    ]  # fmt: skip
    ticket = "zendesk:5158"
    expected = _life(ticket, t0, csat=False)
    expected.insert(5, _event("ticket.first_response", ticket, h(5.5), specialist_id=LI_NA))
    expected[0]["channel"] = "web_service"
    expected += [
        _event("ticket.created", "zendesk:5159", t0, specialist_id="zendesk:4711", channel="mail"),
        _event("ticket.closed", "zendesk:5159", h(1), specialist_id="zendesk:4711",
               resolved=True),
    ]  # fmt: skip
    return Scenario("zendesk", bodies, expected, ticket, "zendesk:4711")


def freshdesk(t0: dt.datetime) -> Scenario:
    def body(kind: str, ticket: str, email: str = "", **extra: str) -> bytes:
        values = {"ticket.id": ticket, "ticket.source": "Email", "ticket.agent.email": email}
        return render("freshdesk", kind, values, **extra)

    bodies = [
        body("ticket_created", "812"),
        body("assignee_changed", "812", LI_NA_EMAIL),
        body("agent_replied", "812", LI_NA_EMAIL),
        body("solved", "812", LI_NA_EMAIL),
        body("satisfaction", "812", LI_NA_EMAIL, rating="5"),
        body("reopened", "812", LI_NA_EMAIL),
        body("solved", "812", LI_NA_EMAIL),  # byte-identical to the first solved
        body("ticket_created", "813"),
        body("solved", "813", BO_CHEN["freshdesk"]),
    ]
    expected = _life("freshdesk:812", t0, csat=True, times=False)
    expected[0]["channel"] = "Email"
    expected += [
        _event("ticket.created", "freshdesk:813", None, channel="Email"),
        _event("ticket.closed", "freshdesk:813", None,
               specialist_id="freshdesk:bo.chen@example.com", resolved=True),
    ]  # fmt: skip
    return Scenario("freshdesk", bodies, expected, "freshdesk:812", "freshdesk:bo.chen@example.com")


def zammad(t0: dt.datetime) -> Scenario:
    li = zammad_user(12, LI_NA_EMAIL, "Li", "Na", LI_NA_EMAIL)
    bo = zammad_user(14, "bo.chen@example.com", "Bo", "Chen", "bo.chen@example.com")

    def h(hours: float) -> dt.datetime:
        return t0 + dt.timedelta(hours=hours)

    def ticket(number: int, state: str, owner: dict[str, Any], hours: float, **kw: Any) -> Any:
        return zammad_ticket(number, state=state, owner=owner, created_at=t0, updated_at=h(hours),
                             **kw)  # fmt: skip

    first = {"first_response_at": h(2), "last_owner_update_at": h(0.25)}
    bodies = [
        zammad_body(ticket(1021, "new", ZAMMAD_NOBODY, 0, updated_by=ZAMMAD_CUSTOMER),
                    zammad_article(501, 1021, sender="Customer", author=ZAMMAD_CUSTOMER,
                                   created_at=t0)),
        zammad_body(ticket(1021, "open", li, 0.25, last_owner_update_at=h(0.25))),
        zammad_body(ticket(1021, "open", li, 1.5, last_owner_update_at=h(0.25)),
                    zammad_article(502, 1021, sender="Agent", author=li, created_at=h(1.5),
                                   internal=True)),
        zammad_body(ticket(1021, "open", li, 2, **first),
                    zammad_article(503, 1021, sender="Agent", author=li, created_at=h(2))),
        zammad_body(ticket(1021, "closed", li, 3, first_response_at=h(2), close_at=h(3),
                           last_close_at=h(3))),
        zammad_body(ticket(1021, "open", li, 5, first_response_at=h(2), close_at=h(3),
                           last_close_at=h(3), updated_by=ZAMMAD_CUSTOMER),
                    zammad_article(504, 1021, sender="Customer", author=ZAMMAD_CUSTOMER,
                                   created_at=h(5))),
        zammad_body(ticket(1021, "open", li, 5.5, **first, close_at=h(3), last_close_at=h(3)),
                    zammad_article(505, 1021, sender="Agent", author=li, created_at=h(5.5))),
        zammad_body(ticket(1021, "closed", li, 6, first_response_at=h(2), close_at=h(3),
                           last_close_at=h(6))),
        zammad_body(ticket(1022, "closed", bo, 1, close_at=h(1), last_close_at=h(1))),
    ]  # fmt: skip
    expected = [
        _event("ticket.created", "zammad:1021", t0, channel="email"),
        _event("ticket.assigned", "zammad:1021", h(0.25), specialist_id=LI_NA),
        _event("ticket.first_response", "zammad:1021", h(2), specialist_id=LI_NA),
        _event("ticket.closed", "zammad:1021", h(3), specialist_id=LI_NA, resolved=True),
        _event("ticket.reopened", "zammad:1021", h(3) + dt.timedelta(seconds=1)),
        _event("ticket.closed", "zammad:1021", h(6), specialist_id=LI_NA, resolved=True),
        _event("ticket.created", "zammad:1022", t0, channel="email"),
        _event("ticket.closed", "zammad:1022", h(1), specialist_id="zammad:14", resolved=True),
    ]
    return Scenario("zammad", bodies, expected, "zammad:1021", "zammad:14")


def chatwoot(t0: dt.datetime) -> Scenario:
    li_push = chatwoot_agent_push(7, "Li Na")
    li_hook = chatwoot_agent_webhook(7, "Li Na", LI_NA_EMAIL)
    bo_push = chatwoot_agent_push(9, "Bo Chen")

    def h(hours: float) -> dt.datetime:
        return t0 + dt.timedelta(hours=hours)

    def conv(display: int, status: str, assignee: Any, hours: float, **kw: Any) -> Any:
        return chatwoot_conversation(display, inbox_id=3, status=status, assignee=assignee,
                                     created_at=t0, updated_at=h(hours), **kw)  # fmt: skip

    replied = {"first_reply_created_at": h(2)}
    solved, reopened = {"status": ("open", "resolved")}, {"status": ("resolved", "open")}
    csat = {"submitted_values": {"csat_survey_response": {"rating": 5, "feedback_message": ""}}}
    bodies = [
        chatwoot_event("conversation_created", conv(42, "open", None, 0)),
        chatwoot_event("conversation_updated", conv(42, "open", li_push, 0.25),
                       {"assignee_id": (None, 7)}),
        chatwoot_message("message_created", 900, conv(42, "open", li_push, 1),
                         message_type="incoming", sender=CHATWOOT_CONTACT, created_at=h(1)),
        chatwoot_message("message_created", 901, conv(42, "open", li_push, 1.5),
                         message_type="outgoing", sender=li_hook, created_at=h(1.5),
                         private=True),
        chatwoot_message("message_created", 902, conv(42, "open", li_push, 2, **replied),
                         message_type="outgoing", sender=li_hook, created_at=h(2)),
        chatwoot_event("conversation_status_changed",
                       conv(42, "resolved", li_push, 3, **replied), solved),
        chatwoot_message("message_created", 903, conv(42, "resolved", li_push, 3, **replied),
                         message_type="template", sender=None, created_at=h(3),
                         content_type="input_csat"),
        chatwoot_message("message_updated", 903, conv(42, "resolved", li_push, 4, **replied),
                         message_type="template", sender=None, created_at=h(3),
                         content_type="input_csat", content_attributes=csat),
        chatwoot_event("conversation_status_changed",
                       conv(42, "open", li_push, 5, **replied), reopened),
        chatwoot_message("message_created", 904, conv(42, "open", li_push, 5.5, **replied),
                         message_type="outgoing", sender=li_hook, created_at=h(5.5)),
        chatwoot_event("conversation_status_changed",
                       conv(42, "resolved", li_push, 6, **replied), solved),
        chatwoot_event("conversation_created", conv(43, "open", bo_push, 0)),
        chatwoot_event("conversation_status_changed", conv(43, "resolved", bo_push, 1), solved),
    ]  # fmt: skip
    expected = _life("chatwoot:3:42", t0, csat=True)
    expected[4]["occurred_at"] = h(3)  # a Chatwoot survey is dated when it was sent
    expected += [
        _event("ticket.created", "chatwoot:3:43", t0, specialist_id="chatwoot:9",
               channel="Channel::WebWidget"),
        _event("ticket.closed", "chatwoot:3:43", h(1), specialist_id="chatwoot:9", resolved=True),
    ]  # fmt: skip
    expected[0]["channel"] = "Channel::WebWidget"
    return Scenario("chatwoot", bodies, expected, "chatwoot:3:42", "chatwoot:9")


SCENARIOS = {"zendesk": zendesk, "freshdesk": freshdesk, "zammad": zammad, "chatwoot": chatwoot}
# Every way a helpdesk reports a ticket's life: the vendors' own, and Zendesk's event
# subscriptions (``Scenario.vendor`` names the route).
LIVES = {**SCENARIOS, "zendesk-events": zendesk_events}
