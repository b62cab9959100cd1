"""Input event models (SPEC §2): the types, their fields and the kpi.events partition key."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal, Self, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)
from pydantic import Strict as _Strict
from pydantic_core import PydanticCustomError

from shared.events.errors import MISSING_FIELD, OUT_OF_RANGE, echo
from shared.events.timestamps import to_timestamp
from shared.text import ID_RULE, TEXT_RULE
from shared.topics import SURVEYS, TICKETS

TICKET_TYPES: Final[frozenset[str]] = frozenset(
    {
        "ticket.created",
        "ticket.assigned",
        "ticket.first_response",
        "ticket.closed",
        "ticket.reopened",
        "ticket.followup",
        "record.audited",
    }
)
SURVEY_TYPES: Final[frozenset[str]] = frozenset(
    {"survey.csat", "survey.nps", "survey.peer_review", "survey.training"}
)
EVENT_TYPES: Final[frozenset[str]] = TICKET_TYPES | SURVEY_TYPES

_MAX_ID_CHARS: Final = 128


def raw_topic_for(event_type: str) -> str:
    """Return the raw Kafka topic an event of ``event_type`` belongs on."""
    if event_type in TICKET_TYPES:
        return TICKETS
    if event_type in SURVEY_TYPES:
        return SURVEYS
    raise ValueError(f"unknown event type {echo(event_type)}")


def _range_schema(low: int, high: int) -> WithJsonSchema:
    # The range is checked by _score_range (for its error code); this only publishes it.
    return WithJsonSchema({"type": "integer", "minimum": low, "maximum": high})


def _score_range(low: int, high: int) -> AfterValidator:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise PydanticCustomError(
                OUT_OF_RANGE, "must be between {low} and {high}", {"low": low, "high": high}
            )
        return value

    return AfterValidator(check)


Timestamp: TypeAlias = Annotated[datetime, BeforeValidator(to_timestamp)]
# The text rules run after the constraints, so they judge the trimmed id that is stored.
Id: TypeAlias = Annotated[
    str,
    _Strict(),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=_MAX_ID_CHARS),
    ID_RULE,
]
Label: TypeAlias = Annotated[str, _Strict(), StringConstraints(max_length=_MAX_ID_CHARS), TEXT_RULE]
Flag: TypeAlias = Annotated[bool, _Strict()]
CsatScore: TypeAlias = Annotated[int, _Strict(), _score_range(1, 5), _range_schema(1, 5)]
NpsScore: TypeAlias = Annotated[int, _Strict(), _score_range(0, 10), _range_schema(0, 10)]
FiveScore: TypeAlias = Annotated[int, _Strict(), _score_range(1, 5), _range_schema(1, 5)]
SchemaVersion: TypeAlias = Annotated[int, _Strict(), Field(ge=1)]


class EventBase(BaseModel):
    """Envelope shared by every event type."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: Id
    type: str
    occurred_at: Timestamp
    source: Label | None = None
    schema_version: SchemaVersion | None = None


class TicketCreated(EventBase):
    """A customer opened a ticket (``specialist_id``: the assignee, if any)."""

    type: Literal["ticket.created"] = "ticket.created"
    ticket_id: Id
    specialist_id: Id | None = None
    channel: Label | None = None


class TicketAssigned(EventBase):
    """The ticket's assignee changed."""

    type: Literal["ticket.assigned"] = "ticket.assigned"
    ticket_id: Id
    specialist_id: Id


class TicketFirstResponse(EventBase):
    """First reply to the customer; later ones are ignored."""

    type: Literal["ticket.first_response"] = "ticket.first_response"
    ticket_id: Id
    specialist_id: Id


class TicketClosed(EventBase):
    """The ticket was closed, its problem solved (``resolved``) or not."""

    type: Literal["ticket.closed"] = "ticket.closed"
    ticket_id: Id
    specialist_id: Id
    resolved: Flag


class TicketReopened(EventBase):
    """The customer reopened the ticket; its earlier closure no longer counts."""

    type: Literal["ticket.reopened"] = "ticket.reopened"
    ticket_id: Id


class TicketFollowup(EventBase):
    """A follow-up call or visit (回访) was done."""

    type: Literal["ticket.followup"] = "ticket.followup"
    ticket_id: Id
    specialist_id: Id


class RecordAudited(EventBase):
    """Spot check of a service record, ``accurate`` or not."""

    type: Literal["record.audited"] = "record.audited"
    specialist_id: Id
    ticket_id: Id | None = None
    accurate: Flag


class _CustomerSurvey(EventBase):
    """A customer's survey: about a ticket, a specialist, or both."""

    model_config = ConfigDict(
        json_schema_extra={"anyOf": [{"required": ["ticket_id"]}, {"required": ["specialist_id"]}]}
    )

    # Scoring attributes a survey through its ticket when no specialist is given,
    # so one of the two is the minimum that can ever be counted.
    ticket_id: Id | None = None
    specialist_id: Id | None = None

    @model_validator(mode="after")
    def _needs_subject(self) -> Self:
        if self.ticket_id is None and self.specialist_id is None:
            raise PydanticCustomError(
                MISSING_FIELD, "ticket_id or specialist_id is required (at least one of them)"
            )
        return self


class SurveyCsat(_CustomerSurvey):
    """Customer satisfaction survey, 1..5; satisfied = score >= 4."""

    type: Literal["survey.csat"] = "survey.csat"
    score: CsatScore


class SurveyNps(_CustomerSurvey):
    """Net promoter survey, 0..10; promoter 9-10, detractor 0-6."""

    type: Literal["survey.nps"] = "survey.nps"
    score: NpsScore


class SurveyPeerReview(EventBase):
    """A colleague's rating of the specialist's collaboration, 1..5."""

    type: Literal["survey.peer_review"] = "survey.peer_review"
    specialist_id: Id
    reviewer_id: Id
    score: FiveScore


class SurveyTraining(EventBase):
    """One attendee's feedback (1..5) on a training session the specialist gave."""

    type: Literal["survey.training"] = "survey.training"
    session_id: Id
    specialist_id: Id
    session_at: Timestamp
    score: FiveScore


Event: TypeAlias = Annotated[
    TicketCreated
    | TicketAssigned
    | TicketFirstResponse
    | TicketClosed
    | TicketReopened
    | TicketFollowup
    | RecordAudited
    | SurveyCsat
    | SurveyNps
    | SurveyPeerReview
    | SurveyTraining,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def partition_key(event: Event) -> bytes:
    """kpi.events key: ticket_id, else specialist_id, else event_id.

    One ticket's events share a partition, so one consumer folds them into its state.
    """
    ticket_id = getattr(event, "ticket_id", None)
    if ticket_id:
        return str(ticket_id).encode()
    specialist_id = getattr(event, "specialist_id", None)
    if specialist_id:
        return str(specialist_id).encode()
    return event.event_id.encode()
