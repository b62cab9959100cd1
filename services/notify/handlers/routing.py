"""Notices to deliveries: each team's and the organisation's channels, grouped per `group_wait`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from services.notify import outbox, queries
from services.notify import repository as repo
from services.notify.channels import make_payload
from services.notify.config import NotifyConfig
from services.notify.handlers.transitions import Note
from services.notify.rules import delivery_key

ORG_GROUP = "-"


def _item(note: Note, lang: str, cfg: NotifyConfig, names: Mapping[str, str]) -> dict[str, Any]:
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
    notes: Sequence[Note],
    now: datetime,
    names: Mapping[str, str],
) -> int:
    """Route each notification to its team's and the organisation's channels, grouped.

    The first message of a (channel, team) group goes out at once; more alerts of that group
    within `group_wait` are collected into one delayed message, so a storm becomes two
    messages instead of hundreds (chat robots rate-limit at ~20/min).
    """
    channels = await queries.enabled_channels(conn)
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
            if grouped and await outbox.append_to_open_group(conn, group_key, now, ids, chunk):
                continue
            not_before = now
            if grouped:
                last = await outbox.last_group_created(conn, group_key, now - cfg.group_wait)
                if last is not None:
                    not_before = max(now, last + cfg.group_wait)
            first = chunk[0]
            key = delivery_key(
                first["payload"]["alert_id"], first["kind"], channel_id, first["seq"]
            )
            if await outbox.insert_delivery(
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
