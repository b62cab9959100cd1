"""Request dependencies of the scoring API: the caller, the read pool, config, today's date."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, Request

from services.scoring.api.errors import bad_param
from services.scoring.config import ScoringConfig
from services.scoring.db import ReadDb
from services.scoring.kpi.lines import KpiLine
from services.scoring.kpi.windows import Window, WindowError, parse_window
from shared.auth import Principal, Role, require
from shared.db import utcnow

Clock = Callable[[], dt.datetime]


@dataclass(frozen=True)
class ReadContext:
    """What every KPI read needs: the read pool, the organisation's zone and lines, today."""

    db: ReadDb
    tz: ZoneInfo
    lines: Mapping[str, KpiLine]
    today: dt.date

    def window(self, name: str, as_of: dt.date | None) -> Window:
        try:
            return parse_window(name, as_of or self.today)
        except WindowError as exc:
            raise bad_param("query", "window", str(exc)) from None

    def window_out(self, window: Window) -> dict[str, Any]:
        return {
            "name": window.name,
            "from": window.start,
            "to": window.end,
            "timezone": self.tz.key,
        }


def scoring_config(request: Request) -> ScoringConfig:
    """The configuration the lifespan parsed once."""
    config: ScoringConfig = request.app.state.config
    return config


def read_db(request: Request) -> ReadDb:
    """The API's read pool, created in the lifespan."""
    db: ReadDb = request.app.state.read_db
    return db


def now(request: Request) -> dt.datetime:
    """The app's clock (injectable: tests replace ``app.state.clock``)."""
    clock: Clock = getattr(request.app.state, "clock", utcnow)
    return clock()


async def read_context(request: Request) -> ReadContext:
    config = scoring_config(request)
    tz = ZoneInfo(config.timezone)
    return ReadContext(read_db(request), tz, config.lines, config.measure.today(now(request)))


# Team-level routes (listings, team KPIs, finalisation, exports): admins and supervisors.
Reader = Annotated[Principal, Depends(require(Role.SUPERVISOR))]
# Routes about one specialist named in the path: also a specialist, for their own id only
# (scope.py answers another id like an unknown one).
Viewer = Annotated[Principal, Depends(require(Role.SUPERVISOR, Role.SPECIALIST))]
Admin = Annotated[Principal, Depends(require())]
Ctx = Annotated[ReadContext, Depends(read_context)]
Pool = Annotated[ReadDb, Depends(read_db)]
