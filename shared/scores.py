"""The kpi.scores message: the one model scoring's relay builds and notify parses."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any, Final, TypeAlias

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from shared.text import ID_RULE, TEXT_RULE

# Widths of the columns notify keeps these values in (scoring's ids and metric keys have the
# same): a longer value is refused when the message is parsed, so the consumer dead-letters
# it instead of failing its batch in PostgreSQL.
MAX_ID_CHARS: Final = 128
MAX_KPI_CHARS: Final = 40
MAX_WINDOW_CHARS: Final = 32

# Specialist and team ids follow the id rule (they reach logs and mail headers); KPI keys and
# the window name the text rule (storable in PostgreSQL), see shared.text. The length
# constraints run first, so the rule sees the value as it would be stored.
SpecialistId: TypeAlias = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS), ID_RULE
]
# No minimum length: an empty team id is an unknown team, not a malformed one.
TeamId: TypeAlias = Annotated[str, StringConstraints(max_length=MAX_ID_CHARS), ID_RULE]
# Any KPI key, also one outside the catalogue: consumers match and store it, never trust it.
KpiName: TypeAlias = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_KPI_CHARS), TEXT_RULE
]


class ScoreWindow(BaseModel):
    """The window the values cover: its name and its local dates."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: Annotated[str, StringConstraints(max_length=MAX_WINDOW_CHARS), TEXT_RULE]
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    timezone: str | None = None


class ScoreKpi(BaseModel):
    """One KPI's value, grade and lines (the KPI-route shape) and its direction."""

    model_config = ConfigDict(extra="ignore")

    value: float | None = None
    numerator: float | None = None
    denominator: float | None = None
    grade: str | None = None
    qualified: float | None = None
    excellent: float | None = None
    min_samples: int | None = None
    # None when the producer does not say (a scoring release that did not send it): the
    # consumer then reads the direction from shared.catalogue.
    higher_is_better: bool | None = None


class ScoreSnapshot(BaseModel):
    """One kpi.scores message: a specialist's KPIs on the alert window, keyed by specialist."""

    model_config = ConfigDict(extra="ignore")

    specialist_id: SpecialistId
    team_id: TeamId | None = None
    window: ScoreWindow
    as_of: str | None = None
    computed_at: AwareDatetime
    reason: str | None = None
    kpis: dict[KpiName, ScoreKpi]

    def to_json(self) -> bytes:
        """The message value: fields in this order, ``computed_at`` as UTC with microseconds.

        Numbers are written as given, so a producer that builds the message with
        ``model_construct`` from exact values keeps counts as JSON integers.
        """
        body: dict[str, Any] = self.model_dump(by_alias=True)
        body["computed_at"] = self.computed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return orjson.dumps(body)
