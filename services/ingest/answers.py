"""Shapes of ingest's HTTP answers, published in its OpenAPI document (the routes build them)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel

from shared.events import WHOLE_MESSAGE
from shared.problems import FieldError, field_error, summary


class FieldProblem(BaseModel):
    """Why an event was refused: the field (``$`` for the whole event), the reason, a code."""

    field: str
    reason: str
    code: str


class EventResult(BaseModel):
    """The verdict on one posted event, by its position in the body."""

    index: int
    event_id: str | None
    status: Literal["accepted", "rejected"]
    errors: list[FieldProblem]


class IntakeAnswer(BaseModel):
    """Answer of POST /v1/events: 202 when any event was accepted, 422 when none was."""

    results: list[EventResult]
    accepted: int
    rejected: int


class WebhookAnswer(IntakeAnswer):
    """Answer of a helpdesk webhook: the events it became, and what was not an event."""

    vendor: str
    ignored: list[str]
    unmapped_agents: list[str] = []


class UnmappedAgentOut(BaseModel):
    """A helpdesk agent no specialist alias maps yet, and the id its events count under."""

    vendor: str
    agent_id: str
    email: str | None
    name: str | None
    counted_as: str
    events: int
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime


class UnmappedAgents(BaseModel):
    """Answer of GET /v1/webhooks/unmapped."""

    agents: list[UnmappedAgentOut]
    note: str


def field_problems(
    problems: Sequence[Mapping[str, Any]], at: Sequence[str | int]
) -> list[FieldError]:
    """FieldProblem dicts as a problem's field errors below ``at`` (``$``: ``at`` itself)."""
    return [
        field_error(
            [*at, *([] if p["field"] == WHOLE_MESSAGE else p["field"].split("."))],
            p["reason"],
            p["code"],
        )
        for p in problems
    ]


def rejected_errors(
    results: Sequence[Mapping[str, Any]], at: Sequence[str], indexed: bool
) -> list[FieldError]:
    """The field errors of every rejected event, each below its index when ``indexed``
    (``[2].score`` in a posted array; ``score`` for a single posted event)."""
    return [
        error
        for result in results
        if result["status"] == "rejected"
        for error in field_problems(result["errors"], [*at, result["index"]] if indexed else at)
    ]


def rejected_detail(rejected: int, errors: Sequence[FieldError]) -> str:
    """The detail of an answer in which every event was rejected."""
    what = "the event was" if rejected == 1 else f"all {rejected} events were"
    return f"{what} rejected (see results); {summary(errors)}"
