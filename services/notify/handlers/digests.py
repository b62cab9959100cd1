"""Team digests to deliveries: every enabled channel of the team, with the alerts open now.

Each digest scoring recorded goes to every enabled channel of its team (chat robots, the
generic webhook, e-mail to the channel's recipients), in the channel's language. The team's
firing alerts are read at relay time, from notify's own table. Organisation-wide channels
are admins' and get none.

The deliveries are inserted in the transaction that marks the digests relayed (outbox), so
each digest reaches each channel once, across restarts and notify replicas.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.notify import outbox, queries
from services.notify import repository as repo
from services.notify.channels import make_digest_payload
from services.notify.config import NotifyConfig
from services.notify.rules import delivery_key
from shared import digests as store
from shared.webhooks import DIGEST_TYPE, DigestOpenAlert

logger = logging.getLogger(__name__)

BATCH = 100
# Open alerts carried in one digest body (open_alerts_total counts them all).
OPEN_ALERTS_MAX = 50


def digest_delivery_key(digest_id: int, channel_id: str) -> str:
    """`X-KPI-Delivery` of one digest to one channel (never an alert's or a reminder's key)."""
    return delivery_key(f"{DIGEST_TYPE}:{digest_id}", "supervisor", channel_id, 0)


async def _open_alerts(conn: repo.Raw, team_id: str) -> tuple[list[DigestOpenAlert], int]:
    rows, total = await queries.open_team_alerts(conn, team_id, OPEN_ALERTS_MAX)
    alerts = [
        DigestOpenAlert(
            alert_id=r["alert_id"],
            specialist_id=r["specialist_id"],
            name=r["name"],
            kpi=r["kpi"],
            value=r["value"],
            qualified=r["qualified"],
            started_at=r["started_at"],
        )
        for r in rows
    ]
    return alerts, total


async def relay_digests(
    session: AsyncSession, cfg: NotifyConfig, now: datetime, limit: int = BATCH
) -> tuple[int, int]:
    """Turn unrelayed digests into deliveries; returns (digests, deliveries).

    Claimed rows stay locked until commit (SKIP LOCKED), so another replica skips them.
    """
    conn = await repo.raw_connection(session)
    claimed = await store.claim_unrelayed(conn, limit)
    if not claimed:
        return 0, 0
    channels = await queries.enabled_channels(conn)
    created = 0
    for digest in claimed:
        team = [ch for ch in channels if ch.team_id is not None and ch.team_id == digest.team_id]
        if not team:
            logger.info(
                "digest %d (%s, %s): team has no enabled channel; nobody is told",
                digest.id,
                digest.team_id,
                digest.period,
            )
            continue
        alerts, total = await _open_alerts(conn, digest.team_id)
        link = cfg.group_link(digest.team_id)
        for ch in team:
            payload = make_digest_payload(
                digest, alerts, total, lang=ch.lang or cfg.lang, link=link
            )
            item: dict[str, Any] = {
                "payload": payload.to_json_dict(),
                "kind": "digest",
                "link": link,
            }
            if await outbox.insert_delivery(
                conn,
                key=digest_delivery_key(digest.id, ch.id),
                channel_id=ch.id,
                # Never an alert group's key, so alert grouping cannot append to it.
                group_key=f"{DIGEST_TYPE}:{digest.id}|{ch.id}",
                team_id=digest.team_id,
                alert_ids=[],
                items=[item],
                now=now,
                not_before=now,
            ):
                created += 1
        logger.info(
            "digest %d (%s, %s): %d channel(s), %d open alert(s)",
            digest.id,
            digest.team_id,
            digest.period,
            len(team),
            total,
        )
    await store.mark_relayed(conn, [d.id for d in claimed], now)
    return len(claimed), created
