"""Acknowledging an alert's current episode, which stops its reminders."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import Enum

from sqlalchemy.ext.asyncio import AsyncSession

from services.notify import queries
from services.notify import repository as repo
from services.notify.handlers.transitions import Outcome, episode_row, transition_event
from services.notify.rules import AlertState, ack


class AckResult(Enum):
    OK = "ok"
    NOT_FOUND = "not_found"  # also another team's alert: the caller cannot tell them apart
    NOT_FIRING = "not_firing"


async def ack_alert(
    session: AsyncSession,
    alert_id: str,
    who: str,
    now: datetime,
    can_see_team: Callable[[str | None], bool],
) -> tuple[AckResult, Outcome]:
    """Acknowledge the current episode of an alert: stops its reminders."""
    conn = await repo.raw_connection(session)
    outcome = Outcome()
    row = await repo.lock_state_by_alert(conn, alert_id)
    if row is None:
        alert = await queries.get_alert(conn, alert_id)
        if alert is None or not can_see_team(alert["team_id"]):
            return AckResult.NOT_FOUND, outcome
        return AckResult.NOT_FIRING, outcome
    if not can_see_team(row.team_id):
        return AckResult.NOT_FOUND, outcome
    state = AlertState.from_dict(row.state)
    if state.status != "firing":
        return AckResult.NOT_FIRING, outcome
    new = ack(state, now)
    if new == state:
        return AckResult.OK, outcome
    await repo.upsert_states(
        conn,
        [
            {
                "specialist_id": new.specialist_id,
                "kpi": new.kpi,
                "state": new.to_dict(),
                "last_obs": row.last_obs,
                "status": new.status,
                "episode": new.episode,
                "alert_id": new.alert_id,
                "team_id": row.team_id,
                "observed_at": new.observed_at,
            }
        ],
        now,
    )
    await repo.upsert_episodes(conn, [episode_row(new, row.team_id, acked_by=who)], now)
    event = transition_event(new, "acked", row.team_id, now)
    event["by"] = who
    outcome.events.append(event)
    outcome.changed = 1
    await repo.insert_events(conn, outcome.events)
    return AckResult.OK, outcome
