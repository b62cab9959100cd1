"""Notify use-cases: evaluate snapshots and ticks, persist state + outbox in one transaction."""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.notify import repository as repo
from services.notify.channels import make_payload
from services.notify.retry import RetryPolicy
from services.notify.rules import (
    AlertState,
    Decision,
    NotifyKind,
    Observation,
    RuleConfig,
    ack,
    decide,
    delivery_key,
    kpi_higher_is_better,
)
from shared.scores import ScoreSnapshot
from shared.settings import Settings

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Key = tuple[str, str]
ORG_GROUP = "-"


@dataclass(frozen=True)
class NotifyConfig:
    """Everything the use-cases need from the settings."""

    rules: RuleConfig
    lang: str = "zh-CN"
    group_wait: timedelta = timedelta(seconds=5)
    link_base: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def from_settings(cls, settings: Settings) -> NotifyConfig:
        base = settings.public_url or f"http://{settings.bind_host}:{settings.scoring_port}"
        return cls(
            rules=RuleConfig(
                ratio_hysteresis=settings.notify_ratio_hysteresis,
                hours_hysteresis=settings.notify_hours_hysteresis,
                repeat_interval=timedelta(seconds=settings.notify_repeat_interval),
                pending_for=timedelta(seconds=settings.notify_pending_seconds),
            ),
            lang=settings.notify_lang,
            group_wait=timedelta(seconds=settings.notify_group_wait_seconds),
            link_base=base.rstrip("/"),
            retry=RetryPolicy(
                retry_for=timedelta(seconds=settings.notify_retry_for),
                base=settings.notify_retry_base_seconds,
                cap=settings.notify_retry_max_seconds,
                max_attempts=settings.notify_max_attempts,
            ),
        )

    def specialist_link(self, specialist_id: str, window: str | None) -> str | None:
        if not self.link_base:
            return None
        sid = urllib.parse.quote(specialist_id, safe="")
        query = f"?window={urllib.parse.quote(window)}" if window else ""
        return f"{self.link_base}/v1/specialists/{sid}/kpis{query}"

    def dashboard_link(self) -> str | None:
        """The dashboard, where the platform-health banner and its incidents are shown."""
        return f"{self.link_base}/ui/" if self.link_base else None

    def group_link(self, team_id: str | None) -> str | None:
        if not self.link_base:
            return None
        if team_id is None:
            return self.link_base
        return f"{self.link_base}/v1/teams/{urllib.parse.quote(team_id, safe='')}/kpis"


# -- observations ----------------------------------------------------------------------


def observations(snapshot: ScoreSnapshot) -> list[Observation]:
    """One Observation per KPI of a `kpi.scores` message, in key order."""
    out: list[Observation] = []
    for kpi in sorted(snapshot.kpis):
        v = snapshot.kpis[kpi]
        out.append(
            Observation(
                specialist_id=snapshot.specialist_id,
                kpi=kpi,
                window=snapshot.window.name,
                value=v.value,
                numerator=v.numerator,
                denominator=v.denominator,
                grade=v.grade,
                qualified=v.qualified,
                excellent=v.excellent,
                min_samples=v.min_samples,
                higher_is_better=(
                    kpi_higher_is_better(kpi) if v.higher_is_better is None else v.higher_is_better
                ),
                observed_at=snapshot.computed_at,
            )
        )
    return out


def obs_to_dict(obs: Observation) -> dict[str, Any]:
    return {
        "specialist_id": obs.specialist_id,
        "kpi": obs.kpi,
        "window": obs.window,
        "value": obs.value,
        "numerator": obs.numerator,
        "denominator": obs.denominator,
        "grade": obs.grade,
        "qualified": obs.qualified,
        "excellent": obs.excellent,
        "min_samples": obs.min_samples,
        "higher_is_better": obs.higher_is_better,
        "observed_at": obs.observed_at.isoformat(),
    }


def obs_from_dict(data: Mapping[str, Any]) -> Observation:
    return Observation(
        specialist_id=data["specialist_id"],
        kpi=data["kpi"],
        window=data["window"],
        value=data["value"],
        numerator=data["numerator"],
        denominator=data["denominator"],
        grade=data["grade"],
        qualified=data["qualified"],
        excellent=data["excellent"],
        min_samples=data["min_samples"],
        higher_is_better=data["higher_is_better"],
        observed_at=datetime.fromisoformat(data["observed_at"]),
    )


def is_silenced(
    silences: Iterable[tuple[str | None, str | None]], specialist_id: str, kpi: str
) -> bool:
    return any(
        (sid is None or sid == specialist_id) and (k is None or k == kpi) for sid, k in silences
    )


# -- batch evaluation ------------------------------------------------------------------


@dataclass
class _Slot:
    specialist_id: str
    kpi: str
    state: AlertState | None
    last_obs: dict[str, Any] | None
    team_id: str | None
    dirty: bool = False


@dataclass(frozen=True)
class _Note:
    state: AlertState
    kind: NotifyKind
    team_id: str | None


@dataclass
class Outcome:
    """What one batch, tick or ack did (for logs, metrics and the SSE broadcast)."""

    changed: int = 0
    notifications: int = 0
    deliveries: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)


def _status_word(state: AlertState) -> str:
    return "firing" if state.status == "firing" else "resolved"


def _transition(prev: AlertState | None, d: Decision) -> str | None:
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


def _event(state: AlertState, transition: str, team_id: str | None, at: datetime) -> dict[str, Any]:
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


def _episode_row(
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


def _apply(
    slot: _Slot,
    obs: Observation,
    now: datetime,
    cfg: NotifyConfig,
    silenced: bool,
    notes: list[_Note],
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
        transition = _transition(prev, d)
        if transition is not None:
            outcome.events.append(_event(d.state, transition, slot.team_id, now))
        if d.notify is not None:
            notes.append(_Note(d.state, d.notify, slot.team_id))
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
    people = await repo.directory(conn, [k[0] for k in keys])
    silences = await repo.active_silences(conn, now)
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
    notes: list[_Note] = []
    outcome = Outcome()
    for obs, _ in pairs:
        slot = slots[(obs.specialist_id, obs.kpi)]
        _apply(
            slot, obs, now, cfg, is_silenced(silences, obs.specialist_id, obs.kpi), notes, outcome
        )
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
    people = await repo.directory(conn, [r.specialist_id for r in rows])
    silences = await repo.active_silences(conn, now)
    notes: list[_Note] = []
    outcome = Outcome()
    slots: list[_Slot] = []
    for row in rows:
        team = people[row.specialist_id][0] if row.specialist_id in people else row.team_id
        slot = _Slot(row.specialist_id, row.kpi, AlertState.from_dict(row.state), None, team)
        assert row.last_obs is not None
        obs = obs_from_dict(row.last_obs)
        slot.last_obs = row.last_obs
        silenced = is_silenced(silences, row.specialist_id, row.kpi)
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
    notes: Sequence[_Note],
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
            episodes[st.alert_id] = _episode_row(st, slot.team_id)
    await repo.upsert_states(conn, state_rows, now)
    await repo.upsert_episodes(conn, list(episodes.values()), now)
    outcome.notifications += len(notes)
    if notes:
        outcome.deliveries += await enqueue_deliveries(conn, cfg, notes, now, names)
    # Last: it holds the event-log lock until commit (see repository.insert_events).
    await repo.insert_events(conn, outcome.events)


# -- outbox ----------------------------------------------------------------------------


def _item(note: _Note, lang: str, cfg: NotifyConfig, names: Mapping[str, str]) -> dict[str, Any]:
    st = note.state
    link = cfg.specialist_link(st.specialist_id, st.window)
    payload = make_payload(
        st, team_id=note.team_id, lang=lang, link=link, kind=note.kind, names=names
    )
    return {
        "payload": payload.to_json_dict(),
        "kind": note.kind,
        "seq": st.seq,
        "name": names.get(st.specialist_id),
        "link": link,
    }


def _chunks(items: list[dict[str, Any]], grouped: bool) -> list[list[dict[str, Any]]]:
    """Split so that one message never carries the same alert twice (fire+resolve)."""
    if not grouped:
        return [[i] for i in items]
    chunks: list[list[dict[str, Any]]] = []
    for item in items:
        aid = item["payload"]["alert_id"]
        for chunk in chunks:
            if all(c["payload"]["alert_id"] != aid for c in chunk):
                chunk.append(item)
                break
        else:
            chunks.append([item])
    return chunks


async def enqueue_deliveries(
    conn: repo.Raw,
    cfg: NotifyConfig,
    notes: Sequence[_Note],
    now: datetime,
    names: Mapping[str, str],
) -> int:
    """Route each notification to its team's and the organisation's channels, grouped.

    The first message of a (channel, team) group goes out at once; more alerts of that group
    within `group_wait` are collected into one delayed message, so a storm becomes two
    messages instead of hundreds (chat robots rate-limit at ~20/min).
    """
    channels = await repo.enabled_channels(conn)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    teams: dict[tuple[str, str], str | None] = {}
    for note in notes:
        for ch in channels:
            if ch.team_id is not None and ch.team_id != note.team_id:
                continue
            gkey = (ch.id, note.team_id or ORG_GROUP)
            groups.setdefault(gkey, []).append(_item(note, ch.lang or cfg.lang, cfg, names))
            teams[gkey] = note.team_id
    grouped = cfg.group_wait > timedelta(0)
    created = 0
    for gkey in sorted(groups):
        channel_id, team_part = gkey
        group_key = f"{channel_id}|{team_part}"
        for chunk in _chunks(groups[gkey], grouped):
            ids = [c["payload"]["alert_id"] for c in chunk]
            if grouped and await repo.append_to_open_group(conn, group_key, now, ids, chunk):
                continue
            not_before = now
            if grouped:
                last = await repo.last_group_created(conn, group_key, now - cfg.group_wait)
                if last is not None:
                    not_before = max(now, last + cfg.group_wait)
            first = chunk[0]
            key = delivery_key(
                first["payload"]["alert_id"], first["kind"], channel_id, first["seq"]
            )
            if await repo.insert_delivery(
                conn,
                key=key,
                channel_id=channel_id,
                group_key=group_key,
                team_id=teams[gkey],
                alert_ids=ids,
                items=chunk,
                now=now,
                not_before=not_before,
            ):
                created += 1
    return created


# -- ack -------------------------------------------------------------------------------


class AckResult(Enum):
    OK = "ok"
    NOT_FOUND = "not_found"
    NOT_FIRING = "not_firing"
    FORBIDDEN = "forbidden"


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
        team = await conn.fetchval("SELECT team_id FROM alerts WHERE alert_id = $1", alert_id)
        exists = await conn.fetchval("SELECT 1 FROM alerts WHERE alert_id = $1", alert_id)
        if not exists:
            return AckResult.NOT_FOUND, outcome
        return (AckResult.NOT_FIRING if can_see_team(team) else AckResult.FORBIDDEN), outcome
    if not can_see_team(row.team_id):
        return AckResult.FORBIDDEN, outcome
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
    await repo.upsert_episodes(conn, [_episode_row(new, row.team_id, acked_by=who)], now)
    event = _event(new, "acked", row.team_id, now)
    event["by"] = who
    outcome.events.append(event)
    outcome.changed = 1
    await repo.insert_events(conn, outcome.events)
    return AckResult.OK, outcome


# -- delivery log and resend -------------------------------------------------------------


class DeliveryResult(Enum):
    OK = "ok"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    NOT_FAILED = "not_failed"


def delivery_out(row: Mapping[str, Any], retry: RetryPolicy) -> dict[str, Any]:
    """API view of a delivery: the channel by name and kind (never its config), one line per
    alert it carries, and when its retry budget ends while it can still be retried."""
    status = row["status"]
    items = []
    for item in row["items"]:
        payload = item["payload"]
        items.append(
            {
                "alert_id": payload["alert_id"],
                "kind": item["kind"],
                "specialist_id": payload["specialist_id"],
                "name": item.get("name"),
                "kpi": payload["kpi"],
                "value": payload["value"],
                "qualified": payload["qualified"],
            }
        )
    return {
        "id": row["id"],
        "delivery_key": row["delivery_key"],
        "status": status,
        "channel": {
            "id": row["channel_id"],
            "name": row["channel_name"],
            "kind": row["channel_kind"],
        },
        "team_id": row["team_id"],
        "alert_ids": list(row["alert_ids"]),
        "items": items,
        "attempts": row["attempts"],
        "created_at": row["created_at"],
        "last_attempt_at": row["last_attempt_at"],
        "next_attempt_at": row["next_attempt_at"] if status == "pending" else None,
        "retry_until": None if status == "sent" else retry.deadline(row["budget_from"]),
        "sent_at": row["sent_at"],
        "last_error": row["last_error"],
        "resent_at": row["resent_at"],
        "resent_by": row["resent_by"],
        "resends": row["resends"],
    }


async def list_deliveries(
    session: AsyncSession,
    cfg: NotifyConfig,
    *,
    status: str | None,
    team_ids: Sequence[str] | None,
    cursor: int | None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of deliveries, newest first, and the cursor of the next page (None: last)."""
    conn = await repo.raw_connection(session)
    rows = await repo.list_deliveries(
        conn, status=status, team_ids=team_ids, before_id=cursor, limit=limit + 1
    )
    page = rows[:limit]
    next_cursor = str(page[-1]["id"]) if len(rows) > limit else None
    return [delivery_out(r, cfg.retry) for r in page], next_cursor


async def get_delivery(
    session: AsyncSession,
    cfg: NotifyConfig,
    delivery_id: int,
    can_see_team: Callable[[str | None], bool],
) -> tuple[DeliveryResult, dict[str, Any] | None]:
    """One delivery with every attempt it took (`attempt_log`), if the caller may see it."""
    conn = await repo.raw_connection(session)
    row = await repo.get_delivery(conn, delivery_id)
    if row is None:
        return DeliveryResult.NOT_FOUND, None
    if not can_see_team(row["team_id"]):
        return DeliveryResult.FORBIDDEN, None
    out = delivery_out(row, cfg.retry)
    out["attempt_log"] = (await repo.attempt_logs(conn, [delivery_id])).get(delivery_id, [])
    return DeliveryResult.OK, out


async def resend_delivery(
    session: AsyncSession,
    cfg: NotifyConfig,
    delivery_id: int,
    who: str,
    now: datetime,
    can_see_team: Callable[[str | None], bool],
) -> tuple[DeliveryResult, dict[str, Any] | None]:
    """Put a failed delivery back in the outbox: same row and key, a fresh retry budget."""
    conn = await repo.raw_connection(session)
    row = await repo.get_delivery(conn, delivery_id, lock=True)
    if row is None:
        return DeliveryResult.NOT_FOUND, None
    if not can_see_team(row["team_id"]):
        return DeliveryResult.FORBIDDEN, None
    if row["status"] != "failed" or not await repo.resend_delivery(conn, delivery_id, who, now):
        return DeliveryResult.NOT_FAILED, None
    resent = await repo.get_delivery(conn, delivery_id)
    assert resent is not None  # locked above, in this transaction
    return DeliveryResult.OK, delivery_out(resent, cfg.retry)
