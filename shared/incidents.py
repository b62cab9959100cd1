"""Platform-health incidents as data: kinds, states and the Incident record (no I/O).

Pure, so domain code (notify's rules and channels) can use the shape without the store;
`shared.health` writes and reads them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

LOG_RESET: Final = "log_reset"
OFFSET_GAP: Final = "offset_gap"
STALL: Final = "stall"
POISON: Final = "poison"
KINDS: Final[frozenset[str]] = frozenset({LOG_RESET, OFFSET_GAP, STALL, POISON})
# Kinds that describe a lasting condition: resolved automatically when it clears.
CONDITIONS: Final[frozenset[str]] = frozenset({STALL})

OPEN: Final = "open"
RESOLVED: Final = "resolved"
AUTO: Final = "auto"

# pg_notify channel: the payload is the incident id (notify relays it at once).
NOTIFY_CHANNEL: Final = "kpi_platform_health"


@dataclass(frozen=True, slots=True)
class Incident:
    """One platform-health incident as stored."""

    id: int
    key: str
    kind: str
    service: str
    status: str
    summary: str
    detail: Mapping[str, Any]
    occurrences: int
    opened_at: dt.datetime
    updated_at: dt.datetime
    resolved_at: dt.datetime | None
    resolved_by: str | None

    @property
    def condition(self) -> bool:
        return self.kind in CONDITIONS

    def to_dict(self) -> dict[str, Any]:
        """The public JSON shape (API, dashboard and notification bodies)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "service": self.service,
            "status": self.status,
            "summary": self.summary,
            "detail": dict(self.detail),
            "occurrences": self.occurrences,
            "opened_at": self.opened_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "resolved_by": self.resolved_by,
        }


def pipeline_status(open_incidents: Sequence[Incident]) -> str:
    """What the dashboard banner shows: "stalled" while a stall is open (KPIs stopped
    moving), "degraded" while any other incident is open (they may be incomplete), else "ok".
    """
    kinds = {i.kind for i in open_incidents if i.status == OPEN}
    if STALL in kinds:
        return "stalled"
    return "degraded" if kinds else "ok"
