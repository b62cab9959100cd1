"""Appraisal-cycle reminders to deliveries: the team's channels, and the specialist by email.

Each reminder scoring recorded goes to every enabled channel of the specialist's team (the
supervisor's), written for the supervisor. The specialist gets their own copy when a channel
reaches them: the team's first enabled email channel (by id) mails it to the specialist's
`email` aliases in the directory. Organisation-wide channels are admins' and get none.

The deliveries are inserted in the transaction that marks the reminders relayed (outbox), so
each reminder reaches each channel once, across restarts and notify replicas.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.notify import outbox, queries
from services.notify import repository as repo
from services.notify.channels import make_reminder_payload
from services.notify.config import NotifyConfig
from services.notify.rules import delivery_key
from shared import reminders as store
from shared.webhooks import REMINDER_TYPE, Audience

logger = logging.getLogger(__name__)

BATCH = 100
EMAIL = "email"


def reminder_delivery_key(reminder_id: int, audience: Audience, channel_id: str) -> str:
    """`X-KPI-Delivery` of one reminder to one channel for one reader (never an alert's key)."""
    return delivery_key(f"{REMINDER_TYPE}:{reminder_id}", audience, channel_id, 0)


async def relay_reminders(
    session: AsyncSession, cfg: NotifyConfig, now: datetime, limit: int = BATCH
) -> tuple[int, int]:
    """Turn unrelayed reminders into deliveries; returns (reminders, deliveries).

    Claimed rows stay locked until commit (SKIP LOCKED), so another replica skips them.
    """
    conn = await repo.raw_connection(session)
    claimed = await store.claim_unrelayed(conn, limit)
    if not claimed:
        return 0, 0
    channels = await queries.enabled_channels(conn)
    ids = sorted({r.specialist_id for r in claimed})
    directory = await queries.directory(conn, ids)
    addresses = await queries.email_aliases(conn, ids)
    created = 0
    for reminder in claimed:
        team = [ch for ch in channels if ch.team_id is not None and ch.team_id == reminder.team_id]
        name = directory.get(reminder.specialist_id, (None, None))[1]
        link = cfg.cycle_link(reminder.specialist_id)
        targets: list[tuple[repo.ChannelRecord, Audience, list[str] | None]] = [
            (ch, "supervisor", None) for ch in team
        ]
        mail = next((ch for ch in team if ch.kind == EMAIL), None)
        to = addresses.get(reminder.specialist_id)
        if mail is not None and to:
            targets.append((mail, "specialist", to))
        for ch, audience, recipients in targets:
            payload = make_reminder_payload(
                reminder, audience, name=name, lang=ch.lang or cfg.lang, link=link
            )
            item: dict[str, Any] = {
                "payload": payload.to_json_dict(),
                "kind": "reminder",
                "name": name,
                "link": link,
            }
            if recipients is not None:
                item["to"] = recipients
            if await outbox.insert_delivery(
                conn,
                key=reminder_delivery_key(reminder.id, audience, ch.id),
                channel_id=ch.id,
                # Never an alert group's key, so alert grouping cannot append to it.
                group_key=f"{REMINDER_TYPE}:{reminder.id}|{ch.id}|{audience}",
                team_id=reminder.team_id,
                alert_ids=[],
                items=[item],
                now=now,
                not_before=now,
            ):
                created += 1
        if not team:
            logger.info(
                "reminder %d (%s, %s %s): team %r has no enabled channel; nobody is told",
                reminder.id,
                reminder.kind,
                reminder.specialist_id,
                reminder.quarter,
                reminder.team_id,
            )
        else:
            logger.info(
                "reminder %d (%s, %s %s): %d channel(s)%s",
                reminder.id,
                reminder.kind,
                reminder.specialist_id,
                reminder.quarter,
                len(team),
                ", and the specialist by email" if len(targets) > len(team) else "",
            )
    await store.mark_relayed(conn, [r.id for r in claimed], now)
    return len(claimed), created
