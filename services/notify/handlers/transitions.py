"""What a decision changed: the batch Outcome, the notices it owes and the rows it logs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.notify.rules import AlertState, Decision, NotifyKind

Clock = Callable[[], datetime]
Key = tuple[str, str]


@dataclass
class Outcome:
    """What one batch, tick or ack did (for logs, metrics and the SSE broadcast)."""

    changed: int = 0
    notifications: int = 0
    deliveries: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Note:
    state: AlertState
    kind: NotifyKind
    team_id: str | None


def _status_word(state: AlertState) -> str:
    return "firing" if state.status == "firing" else "resolved"


def transition_of(prev: AlertState | None, d: Decision) -> str | None:
    if d.notify is not None:
        return d.notify
    before = prev.status if prev is not None else "ok"
    after = d.state.status
    if before == after:
        return None
    if after == "pending":
        return "pending"
    if after == "firing":
        return "silent_fire"
    return "silent_resolve" if before == "firing" else "cleared"


def transition_event(
    state: AlertState, transition: str, team_id: str | None, at: datetime
) -> dict[str, Any]:
    return {
        "alert_id": state.alert_id,
        "specialist_id": state.specialist_id,
        "kpi": state.kpi,
        "team_id": team_id,
        "transition": transition,
        "status": state.status,
        "episode": state.episode,
        "value": state.value,
        "qualified": state.qualified,
        "grade": state.grade,
        "samples": state.samples,
        "at": at,
    }


def episode_row(
    state: AlertState, team_id: str | None, acked_by: str | None = None
) -> dict[str, Any]:
    return {
        "alert_id": state.alert_id,
        "specialist_id": state.specialist_id,
        "kpi": state.kpi,
        "episode": state.episode,
        "team_id": team_id,
        "status": _status_word(state),
        "window": state.window,
        "value": state.value,
        "qualified": state.qualified,
        "grade": state.grade,
        "samples": state.samples,
        "started_at": state.started_at,
        "resolved_at": state.resolved_at if state.status != "firing" else None,
        "acked_at": state.acked_at,
        "acked_by": acked_by,
    }
