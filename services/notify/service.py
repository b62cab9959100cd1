"""NotifyService: the lifespan-owned resources (sender, consumer, relays, tick and LISTEN loops)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from services.notify import repository as repo
from services.notify.broadcast import Broadcaster, parse_notification
from services.notify.config import NotifyConfig
from services.notify.consumer import ScoresConsumer
from services.notify.handlers.digests import relay_digests
from services.notify.handlers.evaluate import run_tick
from services.notify.handlers.reminders import relay_reminders
from services.notify.handlers.transitions import Clock, Outcome
from services.notify.health_relay import HealthRelay
from services.notify.sender import Sender, refresh_status_gauge
from shared import digests, health, reminders
from shared.db import session_scope, utcnow
from shared.runtime import Runtime
from shared.settings import Settings
from shared.streams import StreamSlots

logger = logging.getLogger(__name__)


class NotifyService:
    """Objects the routes share; resources are only created in `start` (lifespan)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or utcnow
        self.broadcaster = Broadcaster()
        self.stream_slots: StreamSlots | None = None
        self.sender: Sender | None = None
        self.consumer: ScoresConsumer | None = None
        self.relay: HealthRelay | None = None
        self.reminder_relay: HealthRelay | None = None
        self.digest_relay: HealthRelay | None = None
        self.cfg: NotifyConfig | None = None
        self._stopping = asyncio.Event()
        self.listening = False

    def committed(self, outcome: Outcome) -> None:
        if outcome.deliveries and self.sender is not None:
            self.sender.wake()

    async def start(self, runtime: Runtime) -> None:
        settings = runtime.settings
        self.cfg = cfg = NotifyConfig.from_settings(settings)
        self.stream_slots = StreamSlots(
            "notify",
            settings.stream_max_per_token,
            settings.notify_stream_max_subscribers,
            "alert streams",
        )
        self._stopping = asyncio.Event()
        if settings.notify_sender:
            self.sender = Sender(
                runtime.sessionmaker,
                cfg,
                clock=self.clock,
                send_timeout=settings.notify_send_timeout,
                lease=settings.notify_lease_seconds,
                per_channel=settings.notify_channel_concurrency,
            )
            runtime.spawn(self.sender.run(), "notify-sender")
            runtime.stoppers.append(self.sender.stop)
            sender = self.sender
            runtime.extra_checks["sender"] = lambda: None if sender.healthy else sender.last_error
        runtime.spawn(self._tick_loop(runtime, cfg), "notify-tick")
        self.relay = HealthRelay(
            runtime.sessionmaker,
            cfg,
            clock=self.clock,
            period=settings.notify_tick_seconds,
            on_enqueued=self.sender.wake if self.sender is not None else None,
        )
        runtime.spawn(self.relay.run(), "notify-health-relay")
        runtime.stoppers.append(self.relay.stop)
        self.reminder_relay = HealthRelay(
            runtime.sessionmaker,
            cfg,
            clock=self.clock,
            period=settings.notify_tick_seconds,
            on_enqueued=self.sender.wake if self.sender is not None else None,
            relay=relay_reminders,
            what="appraisal-cycle reminder",
        )
        runtime.spawn(self.reminder_relay.run(), "notify-reminder-relay")
        runtime.stoppers.append(self.reminder_relay.stop)
        self.digest_relay = HealthRelay(
            runtime.sessionmaker,
            cfg,
            clock=self.clock,
            period=settings.notify_tick_seconds,
            on_enqueued=self.sender.wake if self.sender is not None else None,
            relay=relay_digests,
            what="team digest",
        )
        runtime.spawn(self.digest_relay.run(), "notify-digest-relay")
        runtime.stoppers.append(self.digest_relay.stop)
        runtime.spawn(self._listen_loop(settings), "notify-listen")
        self.consumer = ScoresConsumer(
            settings, runtime.sessionmaker, cfg, self.clock, self.committed
        )
        await self.consumer.start()
        runtime.spawn(self.consumer.run(), "notify-consumer")
        runtime.stoppers.append(self.consumer.stop)
        runtime.stoppers.append(self._stopping.set)
        consumer = self.consumer

        runtime.extra_checks["consumer"] = consumer.problem

    async def tick_once(self, runtime: Runtime, cfg: NotifyConfig) -> Outcome:
        total = Outcome()
        for _ in range(100):
            async with session_scope(runtime.sessionmaker) as session:
                outcome = await run_tick(session, cfg, self.clock())
            total.changed += outcome.changed
            total.notifications += outcome.notifications
            total.deliveries += outcome.deliveries
            self.committed(outcome)
            if outcome.changed == 0:
                break
        return total

    async def _tick_loop(self, runtime: Runtime, cfg: NotifyConfig) -> None:
        period = runtime.settings.notify_tick_seconds
        while not self._stopping.is_set():
            try:
                await self.tick_once(runtime, cfg)
                await refresh_status_gauge(runtime.sessionmaker)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("notify tick failed; next one in %.0fs", period)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), period)

    async def _listen_loop(self, settings: Settings) -> None:
        dsn = settings.database_dsn.replace("postgresql+asyncpg://", "postgresql://", 1)

        def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            parsed = parse_notification(payload)
            if parsed is not None:
                self.broadcaster.publish(*parsed)

        while not self._stopping.is_set():
            conn: Any = None
            try:
                conn = await asyncpg.connect(dsn, timeout=10)
                await conn.add_listener(repo.ALERT_CHANNEL, on_notify)
                for relay, channel in (
                    (self.relay, health.NOTIFY_CHANNEL),
                    (self.reminder_relay, reminders.NOTIFY_CHANNEL),
                    (self.digest_relay, digests.NOTIFY_CHANNEL),
                ):
                    if relay is not None:
                        await conn.add_listener(channel, relay.on_notify)
                        # Whatever was committed while we were not listening goes out now.
                        relay.wake()
                self.listening = True
                while not self._stopping.is_set() and not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), 5)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("alert stream listener: %s; reconnecting", type(exc).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 2)
            finally:
                self.listening = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
