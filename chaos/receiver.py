"""Webhook receiver for the chaos run: answers ok, fails (503), hangs or is down on command."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared.settings import Settings
from shared.webhooks import is_incident
from tests.integration.notify_support import Received, Receiver

# Longer than the send timeout the chaos run uses (the production default), so a hung
# request times out in the sender and is resent with the same key.
HANG_SECONDS = float(Settings.model_fields["notify_send_timeout"].default) + 5.0


@dataclass
class Delivery:
    key: str
    body: bytes
    status: int
    at: float

    @property
    def incident(self) -> bool:
        """A platform-health notice (e.g. a stall during a broker pause), not an alert."""
        return is_incident(orjson.loads(self.body))

    def items(self) -> list[dict[str, Any]]:
        """The alert payloads of the body (none for a platform-health notice)."""
        data = orjson.loads(self.body)
        if is_incident(data):
            return []
        return list(data["alerts"]) if "alerts" in data else [data]


@dataclass
class ChaosReceiver:
    mode: str = "ok"  # ok | fail | hang
    # Down for a long stretch (receiver_down): 503 to everything, whatever ``mode`` says.
    down: bool = False
    log: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    receiver: Receiver | None = None

    def _behaviour(self, req: Received) -> tuple[int, bytes, float]:
        mode = "fail" if self.down else self.mode
        status = 503 if mode == "fail" else 200
        delay = HANG_SECONDS if mode == "hang" else 0.0
        key = req.headers.get("X-KPI-Delivery", "")
        with self.lock:
            self.log.append(Delivery(key, req.body, status, req.at))
        return status, b'{"ok":true}', delay

    def start(self) -> ChaosReceiver:
        self.receiver = Receiver(behaviour=self._behaviour).start()
        return self

    @property
    def url(self) -> str:
        assert self.receiver is not None
        return self.receiver.url

    def delivered(self) -> list[Delivery]:
        """Requests the receiver accepted (200), hung ones included: it did process them."""
        with self.lock:
            return [d for d in self.log if d.status == 200]

    def stop(self) -> None:
        if self.receiver is not None:
            self.receiver.stop()

    def __post_init__(self) -> None:
        self._started = time.time()
