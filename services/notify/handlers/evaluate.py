"""Score snapshots and ticks through the rules: state, transitions and outbox in one transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.notify import queries
from services.notify import repository as repo
from services.notify.config import NotifyConfig
from services.notify.handlers.observations import (
    is_silenced,
    obs_from_dict,
    obs_to_dict,
    observations,
)
from services.notify.handlers.routing import enqueue_deliveries
from services.notify.handlers.transitions import (
    Key,
    Note,
    Outcome,
    episode_row,
    transition_event,
    transition_of,
)
from services.notify.rules import AlertState, Observation, decide
from shared.scores import ScoreSnapshot


@dataclass
class _Slot:
    specialist_id: str
    kpi: str
    state: AlertState | None
    last_obs: dict[str, Any] | None
    team_id: str | None
    dirty: bool = False


def _apply(
    slot: _Slot,
    obs: Observation,
    now: datetime,
    cfg: NotifyConfig,
    silenced: bool,
    notes: list[Note],
    outcome: Outcome,
) -> None:
    prev = slot.state
    d = decide(prev, obs, now, cfg.rules, silenced)
    newer = slot.last_obs is None or obs.observed_at >= datetime.fromisoformat(
        slot.last_obs["observed_at"]
    )
    if d.changed:
        slot.state = d.state
        slot.dirty = True
        outcome.changed += 1
        transition = transition_of(prev, d)
        if transition is not None:
            outcome.events.append(transition_event(d.state, transition, slot.team_id, now))
        if d.notify is not None:
            notes.append(Note(d.state, d.notify, slot.team_id))
    if newer and (d.changed or (slot.state is not None and slot.state.status != "ok")):
        slot.last_obs = obs_to_dict(obs)
        slot.dirty = True


async def handle_snapshots(
    session: AsyncSession,
    cfg: NotifyConfig,
    snapshots: Sequence[ScoreSnapshot],
    now: datetime,
) -> Outcome:
    """Evaluate a batch of `kpi.scores` messages; state, transitions and outbox in one tx."""
    conn = await repo.raw_connection(session)
    pairs: list[tuple[Observation, str | None]] = []
    # Oldest first, so several snapshots of one specialist in a batch replay in order.
    for snap in sorted(snapshots, key=lambda s: s.computed_at):
        pairs.extend((obs, snap.team_id) for obs in observations(snap))
    if not pairs:
        return Outcome()
    keys = sorted({(o.specialist_id, o.kpi) for o, _ in pairs})
    rows = await repo.lock_states(conn, keys)
    people = await queries.directory(conn, [k[0] for k in keys])
    silences = await queries.active_silences(conn, now)
    hints = {o.specialist_id: hint for o, hint in pairs}
    slots: dict[Key, _Slot] = {}
    for key in keys:
        sid = key[0]
        team = people[sid][0] if sid in people else hints.get(sid)
        row = rows.get(key)
        slots[key] = _Slot(
            sid,
            key[1],
            AlertState.from_dict(row.state) if row else None,
            row.last_obs if row else None,
            team,
        )
    notes: list[Note] = []
    outcome = Outcome()
    for obs, _ in pairs:
        slot = slots[(obs.specialist_id, obs.kpi)]
        silenced = is_silenced(silences, obs.specialist_id, obs.kpi, slot.team_id)
        _apply(slot, obs, now, cfg, silenced, notes, outcome)
    names = {sid: name for sid, (_, name) in people.items() if name}
    await _persist(conn, cfg, list(slots.values()), notes, outcome, now, names)
    return outcome


async def run_tick(
    session: AsyncSession, cfg: NotifyConfig, now: datetime, limit: int = 500
) -> Outcome:
    """Re-decide open/pending/owed alerts on their last observation (reminders, pending
    periods, silence expiry) without any new message; rows another worker holds are skipped."""
    conn = await repo.raw_connection(session)
    rows = await repo.claim_open_states(conn, limit)
    if not rows:
        return Outcome()
    people = await queries.directory(conn, [r.specialist_id for r in rows])
    silences = await queries.active_silences(conn, now)
    notes: list[Note] = []
    outcome = Outcome()
    slots: list[_Slot] = []
    for row in rows:
        team = people[row.specialist_id][0] if row.specialist_id in people else row.team_id
        slot = _Slot(row.specialist_id, row.kpi, AlertState.from_dict(row.state), None, team)
        assert row.last_obs is not None
        obs = obs_from_dict(row.last_obs)
        slot.last_obs = row.last_obs
        silenced = is_silenced(silences, row.specialist_id, row.kpi, team)
        _apply(slot, obs, now, cfg, silenced, notes, outcome)
        # Same observation again: only a real state change is worth a write.
        slot.dirty = slot.state is not None and slot.state != AlertState.from_dict(row.state)
        slots.append(slot)
    names = {sid: name for sid, (_, name) in people.items() if name}
    await _persist(conn, cfg, slots, notes, outcome, now, names)
    return outcome


async def _persist(
    conn: repo.Raw,
    cfg: NotifyConfig,
    slots: Sequence[_Slot],
    notes: Sequence[Note],
    outcome: Outcome,
    now: datetime,
    names: Mapping[str, str],
) -> None:
    state_rows: list[dict[str, Any]] = []
    episodes: dict[str, dict[str, Any]] = {}
    for slot in slots:
        if not slot.dirty or slot.state is None:
            continue
        st = slot.state
        state_rows.append(
            {
                "specialist_id": st.specialist_id,
                "kpi": st.kpi,
                "state": st.to_dict(),
                "last_obs": slot.last_obs,
                "status": st.status,
                "episode": st.episode,
                "alert_id": st.alert_id,
                "team_id": slot.team_id,
                "observed_at": st.observed_at,
            }
        )
        if st.episode >= 1 and st.started_at is not None:
            episodes[st.alert_id] = episode_row(st, slot.team_id)
    await repo.upsert_states(conn, state_rows, now)
    await repo.upsert_episodes(conn, list(episodes.values()), now)
    outcome.notifications += len(notes)
    if notes:
        outcome.deliveries += await enqueue_deliveries(conn, cfg, notes, now, names)
    # Last: it holds the event-log lock until commit (see repository.insert_events).
    await repo.insert_events(conn, outcome.events)
