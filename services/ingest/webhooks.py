"""Native webhook use-case: translate a vendor payload, map agents, publish like POST /v1/events.

The translation is pure (``connectors``); here the agents are resolved through the
directory's aliases (cached briefly), the canonical events go through the same intake as
``POST /v1/events`` (validation, dead letters, broker acknowledgement before 2xx), and
agents no alias maps are remembered for ``GET /v1/webhooks/unmapped``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ingest import webhook_repository
from services.ingest.connectors import RECEIPT_KEYS, REDELIVERY_WINDOW, translate
from services.ingest.connectors.base import Agent, NotUnderstood, canonical, resolve
from services.ingest.handlers import HttpIntake
from services.ingest.intake import Outgoing
from shared import metrics
from shared.db import session_scope
from shared.deadletter import Source, deadletter_value
from shared.events import NOT_JSON, InvalidEvent

logger = logging.getLogger(__name__)

# A new alias (PUT /v1/specialists/{id}) applies to webhooks received at most this long after.
ALIAS_CACHE_SECONDS: Final = 10.0
# Expired Freshdesk receipts are deleted at most this often (seconds).
_FORGET_EVERY: Final = 60.0


class StorageUnavailable(RuntimeError):
    """PostgreSQL did not answer where a request needs it; nothing was taken (503, retry)."""


class AliasCache:
    """The whole alias table, reloaded when older than ``ttl`` (one row per agent: small)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], ttl: float) -> None:
        self._sessionmaker = sessionmaker
        self._ttl = ttl
        self._loaded_at = -float("inf")
        self._aliases: dict[tuple[str, str], str] = {}
        self._lock = asyncio.Lock()

    async def get(self) -> dict[tuple[str, str], str]:
        if time.monotonic() - self._loaded_at < self._ttl:
            return self._aliases
        async with self._lock:
            if time.monotonic() - self._loaded_at >= self._ttl:
                async with self._sessionmaker() as session:
                    self._aliases = await webhook_repository.load_aliases(session)
                self._loaded_at = time.monotonic()
        return self._aliases


@dataclass
class WebhookResult:
    """What the vendor is answered: ``status`` and a JSON body."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)


class WebhookIntake:
    """One vendor request: translate, resolve agents, validate and publish, remember unmapped."""

    def __init__(
        self,
        intake: HttpIntake,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        alias_ttl: float = ALIAS_CACHE_SECONDS,
    ) -> None:
        self._intake = intake
        self._sessionmaker = sessionmaker
        self.aliases = AliasCache(sessionmaker, alias_ttl)
        self._forgotten_at = -float("inf")

    async def receive(self, vendor: str, body: bytes, received_at: dt.datetime) -> WebhookResult:
        """Raises BrokerUnavailable or StorageUnavailable when nothing was taken (retry)."""
        source = Source("http", vendor=vendor)
        try:
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise NotUnderstood("$", f"body is not UTF-8 JSON ({exc})", NOT_JSON) from None
            if vendor in RECEIPT_KEYS:
                key = RECEIPT_KEYS[vendor](payload)
                received_at = await self._first_receipt(vendor, key, body, received_at)
            translated = translate(vendor, payload, received_at)
        except NotUnderstood as exc:
            return await self._not_understood(vendor, body, exc, source, received_at)
        for reason in translated.ignored:
            metrics.WEBHOOK_IGNORED.labels(vendor, reason).inc()
        if not translated.changes:
            metrics.WEBHOOK_REQUESTS.labels(vendor, "ignored").inc()
            return WebhookResult(
                202,
                {"vendor": vendor, "accepted": 0, "rejected": 0, "results": [],
                 "ignored": list(translated.ignored)},
            )  # fmt: skip
        try:
            aliases = await self.aliases.get()
        except Exception as exc:
            raise StorageUnavailable(f"aliases not read: {type(exc).__name__}") from None
        events: list[object] = []
        unmapped: list[tuple[Agent, str]] = []
        for change in translated.changes:
            found = resolve(change.agent, aliases)
            if found.unmapped is not None and found.specialist_id is not None:
                unmapped.append((found.unmapped, found.specialist_id))
            events.append(canonical(vendor, change, found.specialist_id))
        result = await self._intake.submit(events, source)
        await self._remember(unmapped)
        outcome = "rejected" if result.status >= 400 else "accepted"
        metrics.WEBHOOK_REQUESTS.labels(vendor, outcome).inc()
        return WebhookResult(
            result.status,
            {"vendor": vendor, **result.body(), "ignored": list(translated.ignored),
             "unmapped_agents": sorted({counted for _, counted in unmapped})},
        )  # fmt: skip

    async def _not_understood(
        self, vendor: str, body: bytes, exc: NotUnderstood, source: Source, at: dt.datetime
    ) -> WebhookResult:
        error: InvalidEvent = exc.as_invalid_event(vendor)
        letter = Outgoing(
            deadletter=True,
            key=None,
            value=deadletter_value(body, error, source, at),
            stats_topic=source.stats_topic,
            code=error.code,
            errors=error.errors,
        )
        await self._intake.store([letter])
        metrics.WEBHOOK_REQUESTS.labels(vendor, "not_understood").inc()
        return WebhookResult(
            422,
            {
                "detail": str(error),
                "code": error.code,
                "errors": [{"field": exc.field, "reason": exc.reason, "code": exc.code}],
            },
        )

    async def _first_receipt(
        self, vendor: str, key: tuple[str, str], body: bytes, now: dt.datetime
    ) -> dt.datetime:
        sha = hashlib.sha256(body).hexdigest()
        try:
            async with session_scope(self._sessionmaker) as session:
                if time.monotonic() - self._forgotten_at > _FORGET_EVERY:
                    await webhook_repository.forget_receipts(session, now - REDELIVERY_WINDOW)
                    self._forgotten_at = time.monotonic()
                return await webhook_repository.first_receipt(
                    session, vendor, key, sha, now, REDELIVERY_WINDOW
                )
        except Exception as exc:
            raise StorageUnavailable(f"{type(exc).__name__}: {exc}"[:300]) from None

    async def _remember(self, unmapped: list[tuple[Agent, str]]) -> None:
        if not unmapped:
            return
        try:
            async with session_scope(self._sessionmaker) as session:
                await webhook_repository.record_unmapped(session, unmapped)
        except Exception:
            # The events are already on the broker; the list is a convenience for admins.
            logger.exception("unmapped agents not recorded: %d", len(unmapped))
