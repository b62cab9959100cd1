"""Outbox relay: claims due deliveries (SKIP LOCKED, leased), sends them, records attempts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage

import httpx
import orjson
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify import outbox, queries
from services.notify import repository as repo
from services.notify.channels import (
    Channel,
    EmailChannel,
    OutgoingRequest,
    build_digest_delivery,
    build_email,
    build_incident_delivery,
    build_probe_delivery,
    build_reminder_delivery,
    build_request,
    make_probe_payload,
)
from services.notify.config import NotifyConfig
from services.notify.retry import next_attempt
from services.notify.rules import NotifyKind
from services.notify.schemas import build_channel
from services.notify.transport import describe_failure, http_client, send_mail, smtp_tls_context
from shared.db import session_scope
from shared.webhooks import (
    AlertPayload,
    DigestPayload,
    IncidentPayload,
    ReminderPayload,
    is_digest,
    is_incident,
    is_reminder,
)

logger = logging.getLogger(__name__)

DELIVERIES = Counter(
    "kpi_notify_deliveries_total",
    "Delivery attempts by channel kind and outcome (sent, retry, failed)",
    ["kind", "outcome"],
)
DELIVERY_SECONDS = Histogram(
    "kpi_notify_delivery_seconds",
    "Duration of one send attempt",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CHANNEL_TESTS = Counter(
    "kpi_notify_channel_tests_total",
    "Channel tests (send test) by channel kind and outcome (sent, failed); not deliveries",
    ["kind", "outcome"],
)
DELIVERY_STATUS = Gauge(
    "kpi_notify_outbox_deliveries", "Deliveries in the outbox by status", ["status"]
)

# A channel test answers within this, below the dashboard proxy's 10 s read timeout.
PROBE_MAX_SECONDS = 8.0
# 4xx answers that a later retry can cure; any other 4xx means the request itself is wrong.
_RETRYABLE_4XX = frozenset({408, 409, 425, 429})


@dataclass(frozen=True)
class SendResult:
    ok: bool
    permanent: bool
    http_status: int | None
    error: str | None


def classify_response(status: int, body: bytes) -> SendResult:
    """Chat robots answer 200 with an error code in the body; treat those as failures.

    The stored reason is the status (and a robot's numeric code), never the body's text:
    supervisors read it, and a target's answer is not theirs to read.
    """
    if 200 <= status < 300:
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            code = data.get("errcode", data.get("code", data.get("StatusCode", 0)))
            if isinstance(code, int) and code != 0:
                return SendResult(False, False, status, f"receiver error code {code}")
        return SendResult(True, False, status, None)
    permanent = 400 <= status < 500 and status not in _RETRYABLE_4XX
    return SendResult(False, permanent, status, f"HTTP {status}")


async def _attempt(send: Awaitable[SendResult], timeout: float) -> SendResult:
    """The result of one send, a failure (fixed reason) when it raised or took too long."""
    try:
        return await asyncio.wait_for(send, timeout + 1)
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        return SendResult(False, False, None, "timed out")
    except Exception as exc:
        reason, permanent = describe_failure(exc)
        return SendResult(False, permanent, None, reason)


async def transmit(
    http: httpx.AsyncClient,
    cfg: NotifyConfig,
    tls: ssl.SSLContext,
    timeout: float,
    target: Channel,
    out: OutgoingRequest | EmailMessage,
) -> SendResult:
    """Send one built notice on the wire: mail over checked SMTP, the rest over ``http``."""
    if isinstance(out, EmailMessage):
        assert isinstance(target, EmailChannel)
        await asyncio.to_thread(
            send_mail, target, out, timeout=timeout, egress=cfg.egress, smtp=cfg.smtp, tls=tls
        )
        return SendResult(True, False, None, None)
    resp = await http.request(out.method, out.url, headers=out.headers, content=out.body)
    return classify_response(resp.status_code, resp.content)


class Sender:
    """One per process; several processes share the outbox safely (row locks + leases)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        cfg: NotifyConfig,
        *,
        clock: Callable[[], datetime],
        send_timeout: float = 10.0,
        lease: float = 60.0,
        per_channel: int = 4,
        max_in_flight: int = 64,
        poll_interval: float = 0.5,
        worker: str | None = None,
    ) -> None:
        self._sm = sessionmaker
        self._cfg = cfg
        self._clock = clock
        self._timeout = send_timeout
        self._lease = timedelta(seconds=max(lease, send_timeout * 2))
        self._per_channel = per_channel
        self._max_in_flight = max_in_flight
        self._poll = poll_interval
        self.worker = worker or f"{socket.gethostname()}:{id(self):x}"
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._in_flight: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        # Built now so that an unreadable KPI_NOTIFY_SMTP_CA_FILE stops start-up, named.
        self._tls = smtp_tls_context(cfg.smtp)
        self.healthy = True
        self.last_error: str | None = None

    def wake(self) -> None:
        """New deliveries were committed: look now instead of at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        self._http = http_client(self._cfg.egress, self._timeout)
        try:
            while not self._stopping.is_set():
                try:
                    claimed = await self._claim()
                    self.healthy, self.last_error = True, None
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.warning("notify sender: claim failed: %s", type(exc).__name__)
                    self.healthy, self.last_error = False, type(exc).__name__
                    claimed = []
                    await asyncio.sleep(1.0)
                for item, channel in claimed:
                    self._start(item, channel)
                if claimed and sum(self._in_flight.values()) < self._max_in_flight:
                    continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll)
            # Let in-flight sends finish (bounded by the send timeout) so their result lands.
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=self._timeout + 2)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._http.aclose()

    async def _claim(self) -> list[tuple[outbox.Claimed, repo.ChannelRecord | None]]:
        room = self._max_in_flight - sum(self._in_flight.values())
        if room <= 0:
            return []
        now = self._clock()
        async with session_scope(self._sm) as session:
            conn = await repo.raw_connection(session)
            claimed = await outbox.claim_due(
                conn, now, now + self._lease, room, dict(self._in_flight), self._per_channel
            )
            if not claimed:
                return []
            channels = await queries.channels_by_id(conn, [c.channel_id for c in claimed])
        return [(item, channels.get(item.channel_id)) for item in claimed]

    def _start(self, item: outbox.Claimed, channel: repo.ChannelRecord | None) -> None:
        self._in_flight[item.channel_id] = self._in_flight.get(item.channel_id, 0) + 1
        task = asyncio.create_task(self._deliver(item, channel), name=f"deliver-{item.id}")
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            left = self._in_flight.get(item.channel_id, 1) - 1
            if left <= 0:
                self._in_flight.pop(item.channel_id, None)
            else:
                self._in_flight[item.channel_id] = left
            self._wake.set()

        task.add_done_callback(done)

    async def _deliver(self, item: outbox.Claimed, channel: repo.ChannelRecord | None) -> None:
        started = time.perf_counter()
        kind = channel.kind if channel else "unknown"
        if channel is None or not channel.enabled:
            result = SendResult(False, True, None, "channel deleted or disabled")
        else:
            result = await _attempt(self._send(item, channel), self._timeout)
        duration = time.perf_counter() - started
        DELIVERY_SECONDS.labels(kind).observe(duration)
        await self._record(item, channel, result, duration)

    async def _send(self, item: outbox.Claimed, channel: repo.ChannelRecord) -> SendResult:
        target = build_channel(channel.id, channel.kind, channel.config)
        if item.items and is_incident(item.items[0]["payload"]):
            # A platform-health notice (health_relay): one incident, never grouped.
            out = build_incident_delivery(
                target,
                IncidentPayload.model_validate(item.items[0]["payload"]),
                lang=channel.lang or self._cfg.lang,
                link=item.items[0].get("link"),
                now=self._clock(),
                delivery_key=item.delivery_key,
            )
            return await self._transmit(target, out)
        if item.items and is_reminder(item.items[0]["payload"]):
            # An appraisal-cycle reminder (reminder_relay): one, never grouped; a specialist's
            # copy names its own recipients.
            first = item.items[0]
            out = build_reminder_delivery(
                target,
                ReminderPayload.model_validate(first["payload"]),
                lang=channel.lang or self._cfg.lang,
                link=first.get("link"),
                now=self._clock(),
                delivery_key=item.delivery_key,
                recipients=first.get("to"),
            )
            return await self._transmit(target, out)
        if item.items and is_digest(item.items[0]["payload"]):
            # A team digest (digest relay): one, never grouped, to the channel's own readers.
            out = build_digest_delivery(
                target,
                DigestPayload.model_validate(item.items[0]["payload"]),
                lang=channel.lang or self._cfg.lang,
                link=item.items[0].get("link"),
                now=self._clock(),
                delivery_key=item.delivery_key,
            )
            return await self._transmit(target, out)
        payloads = [AlertPayload.model_validate(i["payload"]) for i in item.items]
        kinds: dict[str, NotifyKind] = {i["payload"]["alert_id"]: i["kind"] for i in item.items}
        names = {i["payload"]["specialist_id"]: i["name"] for i in item.items if i.get("name")}
        lang = channel.lang or self._cfg.lang
        if len(payloads) == 1:
            link = item.items[0].get("link")
            alerts: AlertPayload | list[AlertPayload] = payloads[0]
        else:
            link = self._cfg.group_link(item.team_id)
            alerts = payloads
        now = self._clock()
        if isinstance(target, EmailChannel):
            msg = build_email(
                alerts,
                lang,
                link,
                target.sender,
                target.recipients,
                now=now,
                delivery_key=item.delivery_key,
                kinds=kinds,
                names=names,
            )
            return await self._transmit(target, msg)
        req = build_request(
            target,
            alerts,
            lang=lang,
            link=link,
            now=now,
            delivery_key=item.delivery_key,
            kinds=kinds,
            names=names,
        )
        return await self._transmit(target, req)

    async def _transmit(self, target: Channel, out: OutgoingRequest | EmailMessage) -> SendResult:
        assert self._http is not None
        return await transmit(self._http, self._cfg, self._tls, self._timeout, target, out)

    async def _record(
        self,
        item: outbox.Claimed,
        channel: repo.ChannelRecord | None,
        result: SendResult,
        duration: float,
    ) -> None:
        now = self._clock()
        kind = channel.kind if channel else "unknown"
        next_at: datetime | None = None
        if result.ok:
            status = outcome = "sent"
        elif result.permanent:
            status = outcome = "failed"
        else:
            next_at = next_attempt(
                self._cfg.retry,
                budget_from=item.budget_from,
                attempts=item.budget_attempts,
                now=now,
                rand=random.random,
            )
            status, outcome = ("failed", "failed") if next_at is None else ("pending", "retry")
        DELIVERIES.labels(kind, outcome).inc()
        if status == "pending":
            logger.warning(
                "delivery %s to channel %s (%s) attempt %d: %s -> retry at %s",
                item.delivery_key,
                item.channel_id,
                kind,
                item.attempts,
                result.error,
                next_at.isoformat() if next_at else None,
            )
        for attempt in range(5):
            try:
                async with session_scope(self._sm) as session:
                    conn = await repo.raw_connection(session)
                    kept = await outbox.finish_attempt(
                        conn,
                        item,
                        at=now,
                        status=status,
                        next_attempt_at=next_at,
                        outcome="sent"
                        if result.ok
                        else ("failed" if status == "failed" else "error"),
                        http_status=result.http_status,
                        error=result.error,
                        duration_ms=duration * 1000,
                        worker=self.worker,
                    )
                if not kept:
                    logger.warning("delivery %s: lease lost before recording", item.delivery_key)
                elif status == "failed":
                    self._log_failed(item, channel, result)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The database blinked: the lease expires and another attempt resends with
                # the same key, so retrying the bookkeeping briefly is enough.
                logger.warning("delivery %s: recording failed: %s", item.delivery_key, exc)
                await asyncio.sleep(0.2 * 2**attempt)

    def _log_failed(
        self,
        item: outbox.Claimed,
        channel: repo.ChannelRecord | None,
        result: SendResult,
    ) -> None:
        # Never silent: the one line an operator greps for before resending.
        if result.permanent:
            why = "a permanent error"
        else:
            why = f"retry budget ended {self._cfg.retry.deadline(item.budget_from).isoformat()}"
        logger.warning(
            "delivery %d (key %s) to channel %s %r (%s) FAILED after %d attempt(s), %s: %s; "
            "resend with POST /v1/deliveries/%d/resend",
            item.id,
            item.delivery_key,
            item.channel_id,
            channel.name if channel else None,
            channel.kind if channel else "unknown",
            item.attempts,
            why,
            result.error,
            item.id,
        )


async def refresh_status_gauge(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        counts = await queries.delivery_counts(await repo.raw_connection(session))
    for status in ("pending", "sending", "sent", "failed"):
        DELIVERY_STATUS.labels(status).set(counts.get(status, 0))


@dataclass(frozen=True)
class ProbeResult:
    """One channel test: what the single attempt gave, and the key it was sent under."""

    result: SendResult
    test_id: str
    delivery_key: str
    sent_at: datetime
    duration_ms: float


async def send_probe(
    channel: repo.ChannelRecord,
    cfg: NotifyConfig,
    *,
    requested_by: str,
    now: datetime,
    timeout: float,
) -> ProbeResult:
    """Send a channel test through the channel's own builder and the checked transport.

    One attempt, no retries and no outbox row: the answer is the record (the caller logs it).
    """
    test_id = str(uuid.uuid4())
    key = f"test-{test_id}"
    timeout = min(timeout, PROBE_MAX_SECONDS)
    lang = channel.lang or cfg.lang

    async def send() -> SendResult:
        target = build_channel(channel.id, channel.kind, channel.config)
        probe = make_probe_payload(
            test_id=test_id,
            channel_id=channel.id,
            channel_name=channel.name,
            requested_by=requested_by,
            now=now,
            lang=lang,
        )
        out = build_probe_delivery(
            target, probe, lang=lang, link=cfg.dashboard_link(), now=now, delivery_key=key
        )
        async with http_client(cfg.egress, timeout) as http:
            return await transmit(http, cfg, smtp_tls_context(cfg.smtp), timeout, target, out)

    started = time.perf_counter()
    result = await _attempt(send(), timeout)
    CHANNEL_TESTS.labels(channel.kind, "sent" if result.ok else "failed").inc()
    return ProbeResult(result, test_id, key, now, (time.perf_counter() - started) * 1000)
