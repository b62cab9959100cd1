"""In-process fan-out of alert transitions (fed by LISTEN) to SSE subscribers."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

LiveEvent = tuple[int | None, dict[str, Any]]


class Subscription:
    """One SSE client's queue; `lagged` once an event had to be dropped for it."""

    def __init__(self, max_queue: int) -> None:
        self.queue: asyncio.Queue[LiveEvent] = asyncio.Queue(max_queue)
        self.lagged = False


class Broadcaster:
    """In-process fan-out of alert transitions to SSE subscribers (fed by LISTEN)."""

    def __init__(self, max_queue: int = 1000) -> None:
        self._subscribers: set[Subscription] = set()
        self._max_queue = max_queue

    def subscribe(self) -> Subscription:
        sub = Subscription(self._max_queue)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def publish(self, event_id: int | None, event: dict[str, Any]) -> None:
        for sub in list(self._subscribers):
            try:
                sub.queue.put_nowait((event_id, event))
            except asyncio.QueueFull:
                # A stalled client must not stall everyone else: its stream ends and it
                # resumes from its Last-Event-ID, replayed from the database.
                sub.lagged = True

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)


def parse_notification(payload: str) -> LiveEvent | None:
    """NOTIFY payload -> (event id, event); ids ride in an {"id", "data"} envelope."""
    try:
        msg = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(msg, dict):
        return None
    if isinstance(msg.get("id"), int) and isinstance(msg.get("data"), dict):
        return msg["id"], msg["data"]
    # A bare event from a replica of the previous release, during a rolling upgrade.
    return None, msg
