"""Relay of platform-health incidents to admins: outbox deliveries to organisation-wide channels.

Admins are the people behind channels without a `team_id` (the organisation's channels);
team channels belong to supervisors, who see the dashboard banner instead. Each incident
transition is turned into one delivery per enabled organisation-wide channel in the same
transaction that records it as relayed, so the sender's retries, leases and attempt log
apply unchanged and no transition is announced twice, also with several notify replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeAlias

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify import outbox, queries
from services.notify import repository as repo
from services.notify.channels import make_incident_payload
from services.notify.config import NotifyConfig
from services.notify.rules import delivery_key, incident_notice
from shared import health
from shared.db import session_scope
from shared.webhooks import INCIDENT_TYPE, Announced

logger = logging.getLogger(__name__)

BATCH = 100


def incident_delivery_key(incident_id: int, status: Announced, channel_id: str) -> str:
    """`X-KPI-Delivery` of one incident transition to one channel (never an alert's key)."""
    return delivery_key(f"{INCIDENT_TYPE}:{incident_id}", status, channel_id, 0)


async def relay_incidents(
    session: AsyncSession, cfg: NotifyConfig, now: datetime, limit: int = BATCH
) -> tuple[int, int]:
    """Turn unrelayed incident transitions into deliveries; returns (incidents, deliveries).

    Claimed rows stay locked until commit (SKIP LOCKED), so another replica skips them.
    """
    conn = await repo.raw_connection(session)
    incidents = await health.claim_unnotified(conn, limit)
    if not incidents:
        return 0, 0
    channels = [ch for ch in await queries.enabled_channels(conn) if ch.team_id is None]
    link = cfg.dashboard_link()
    created = 0
    for incident in incidents:
        notice = incident_notice(incident)
        if notice is None:
            continue
        if not channels:
            logger.warning(
                "platform incident %d (%s, %s): no enabled organisation-wide channel; "
                "only the dashboard shows it",
                incident.id,
                incident.kind,
                notice,
            )
        for ch in channels:
            lang = ch.lang or cfg.lang
            payload = make_incident_payload(incident, notice, lang=lang, link=link)
            item: dict[str, Any] = {"payload": payload.to_json_dict(), "kind": notice, "link": link}
            if await outbox.insert_delivery(
                conn,
                key=incident_delivery_key(incident.id, notice, ch.id),
                channel_id=ch.id,
                # Never the key of an alert group, so alert grouping cannot append to it.
                group_key=f"{INCIDENT_TYPE}:{incident.id}|{ch.id}",
                team_id=None,
                alert_ids=[],
                items=[item],
                now=now,
                not_before=now,
            ):
                created += 1
        logger.info(
            "platform incident %d (%s, %s) %s: %d channel(s)",
            incident.id,
            incident.kind,
            incident.service,
            notice,
            len(channels),
        )
    await health.mark_notified(conn, incidents)
    return len(incidents), created


# One batch of a table relayed to the outbox: (rows claimed, deliveries created).
RelayBatch: TypeAlias = Callable[[AsyncSession, NotifyConfig, datetime], Awaitable[tuple[int, int]]]


class HealthRelay:
    """Runs `relay` (`relay_incidents` unless told otherwise, e.g. the appraisal-cycle
    reminders' relay) when woken (LISTEN on its channel) and every period."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        cfg: NotifyConfig,
        *,
        clock: Callable[[], datetime],
        period: float,
        on_enqueued: Callable[[], None] | None = None,
        relay: RelayBatch = relay_incidents,
        what: str = "platform incident",
    ) -> None:
        self._sm = sessionmaker
        self._cfg = cfg
        self._clock = clock
        self._period = period
        self._on_enqueued = on_enqueued
        self._relay = relay
        self._what = what
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def on_notify(self, _conn: Any, _pid: int, _channel: str, _payload: str) -> None:
        """asyncpg listener of the relayed table's channel (`health.NOTIFY_CHANNEL`: an
        incident opened or resolved; `reminders.NOTIFY_CHANNEL`: reminders recorded)."""
        self.wake()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def relay_pending(self) -> int:
        """Relay everything owed (in batches); returns the number of deliveries created."""
        total = 0
        while not self._stopping.is_set():
            async with session_scope(self._sm) as session:
                claimed, created = await self._relay(session, self._cfg, self._clock())
            total += created
            if created and self._on_enqueued is not None:
                self._on_enqueued()
            if claimed < BATCH:
                break
        return total

    async def run(self) -> None:
        while not self._stopping.is_set():
            # Cleared before relaying: a notification arriving meanwhile triggers another pass.
            self._wake.clear()
            try:
                await self.relay_pending()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("%s relay failed; retrying in %.0fs", self._what, self._period)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._period)
