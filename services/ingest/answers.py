"""Shapes of ingest's HTTP answers, published in its OpenAPI document (the routes build them)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel


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
