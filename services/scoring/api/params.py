"""Path and query parameters shared by the scoring routers (names, limits, descriptions)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Path, Query

from services.scoring.api.schemas import DirectoryId, LookupId

DEFAULT_WINDOW = "30d"

SpecialistId = Annotated[LookupId, Path(min_length=1)]
TeamId = Annotated[LookupId, Path(min_length=1)]
# PUT creates the row, so its path id must pass the id rule like an event's ids.
NewId = Annotated[DirectoryId, Path()]
TeamFilter = Annotated[LookupId | None, Query(description="Only this team.")]
WindowParam = Annotated[
    str,
    Query(description="Nd (N = 1..400 local dates ending at as_of), qtd, or YYYYQn."),
]
AsOfParam = Annotated[
    dt.date | None, Query(description="Local date (YYYY-MM-DD); default today in KPI_TIMEZONE.")
]
