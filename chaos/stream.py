"""Streams a generated history through the raw topics and HTTP intake, retrying until taken."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaProducer

from chaos.generator import Malformed
from shared.events import Event, encode_event, partition_key
from shared.kafka import create_producer
from shared.topics import Topics

logger = logging.getLogger("chaos.stream")

KafkaItem = tuple[str, bytes | None, bytes]  # topic, key, value
HttpItem = dict[str, Any] | bytes  # one event object, or a whole raw (non-JSON) body


def raw_topic(topics: Topics, event: Event) -> str:
    return topics.surveys if event.type.startswith("survey.") else topics.tickets


def kafka_item(topics: Topics, event: Event) -> KafkaItem:
    return raw_topic(topics, event), partition_key(event), encode_event(event)


def kafka_bad(topics: Topics, bad: Malformed) -> KafkaItem:
    assert bad.raw is not None
    topic = topics.surveys if bad.topic == "surveys" else topics.tickets
    return topic, bad.marker.encode(), bad.raw


def http_item(event: Event) -> HttpItem:
    obj: dict[str, Any] = orjson.loads(encode_event(event))
    return obj


def http_bad(bad: Malformed) -> HttpItem:
    if bad.obj is not None:
        return bad.obj
    assert bad.raw is not None
    return bad.raw


@dataclass
class StreamStats:
    kafka_sent: int = 0
    kafka_resent: int = 0
    http_sent: int = 0
    http_retries: int = 0
    http_unexpected_rejections: list[str] = field(default_factory=list)
    finished_at: float = 0.0


@dataclass
class Streamer:
    """Paces two lists of inputs over ``duration`` seconds; nothing is given up on."""

    bootstrap: str
    ingest_url: str
    token: str
    kafka: list[KafkaItem]
    http: list[HttpItem]
    duration: float
    raw_ends: dict[tuple[str, int], int]
    bad_markers: set[str]
    stats: StreamStats = field(default_factory=StreamStats)
    tick: float = 0.2
    http_batch: int = 50
    # Cleared by pause(): both senders stop at their next step, everything sent acked.
    _go: asyncio.Event = field(default_factory=asyncio.Event)
    _idle: dict[str, asyncio.Event] = field(default_factory=dict)
    _finished_senders: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._go.set()
        self._idle = {"kafka": asyncio.Event(), "http": asyncio.Event()}

    async def run(self) -> None:
        await asyncio.gather(self._run_kafka(), self._run_http())
        self.stats.finished_at = time.monotonic()

    async def pause(self) -> None:
        """Stop both senders; returns once nothing they sent is unacknowledged."""
        self._go.clear()
        await asyncio.gather(*(e.wait() for e in self._idle.values()))

    def resume(self) -> None:
        for who, idle in self._idle.items():
            if who not in self._finished_senders:
                idle.clear()
        self._go.set()

    async def _hold(self, who: str) -> None:
        if not self._go.is_set():
            self._idle[who].set()
            await self._go.wait()

    def _finished(self, who: str) -> None:
        self._finished_senders.add(who)
        self._idle[who].set()

    def _share(self, total: int, step: int, steps: int) -> tuple[int, int]:
        return total * step // steps, total * (step + 1) // steps

    async def _run_kafka(self) -> None:
        producer = create_producer(
            self.bootstrap, client_id="chaos-stream", linger_ms=10, request_timeout_ms=10000
        )
        await self._start_producer(producer)
        steps = max(1, int(self.duration / self.tick))
        started = time.monotonic()
        pending: list[KafkaItem] = []
        try:
            for step in range(steps):
                if not self._go.is_set():
                    while pending:
                        pending = await self._send(producer, pending)
                    await self._hold("kafka")
                lo, hi = self._share(len(self.kafka), step, steps)
                pending.extend(self.kafka[lo:hi])
                pending = await self._send(producer, pending)
                await asyncio.sleep(max(0.0, started + (step + 1) * self.tick - time.monotonic()))
            while pending:
                pending = await self._send(producer, pending)
        finally:
            self._finished("kafka")
            await producer.stop()

    async def _start_producer(self, producer: AIOKafkaProducer) -> None:
        while True:
            try:
                await producer.start()
                return
            except Exception as exc:
                logger.warning("producer start failed (%s); retrying", exc)
                await asyncio.sleep(1)

    async def _send(self, producer: AIOKafkaProducer, items: list[KafkaItem]) -> list[KafkaItem]:
        """Send and await acks; returns the items to send again (any failure)."""
        if not items:
            return []
        futures: list[Any] = []
        failed: list[KafkaItem] = []
        for item in items:
            topic, key, value = item
            try:
                futures.append((item, await producer.send(topic, value, key=key)))
            except Exception:
                failed.append(item)
        for item, fut in futures:
            try:
                meta = await fut
            except Exception:
                failed.append(item)
                continue
            tp = (meta.topic, meta.partition)
            self.raw_ends[tp] = max(self.raw_ends.get(tp, 0), meta.offset + 1)
            self.stats.kafka_sent += 1
        if failed:
            self.stats.kafka_resent += len(failed)
            await asyncio.sleep(0.5)
        return failed

    async def _run_http(self) -> None:
        steps = max(1, int(self.duration / self.tick))
        started = time.monotonic()
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(base_url=self.ingest_url, headers=headers) as client:
            for step in range(steps):
                await self._hold("http")
                lo, hi = self._share(len(self.http), step, steps)
                chunk = self.http[lo:hi]
                objs = [i for i in chunk if isinstance(i, dict)]
                for start in range(0, len(objs), self.http_batch):
                    await self._post(client, objs[start : start + self.http_batch])
                for raw in (i for i in chunk if isinstance(i, bytes)):
                    await self._post_raw(client, raw)
                await asyncio.sleep(max(0.0, started + (step + 1) * self.tick - time.monotonic()))
        self._finished("http")

    async def _post(self, client: httpx.AsyncClient, objs: list[dict[str, Any]]) -> None:
        while True:
            try:
                r = await client.post("/v1/events", content=orjson.dumps(objs), timeout=20)
            except httpx.HTTPError:
                r = None
            if r is not None and r.status_code in (202, 422):
                for res in r.json()["results"]:
                    if res["status"] != "accepted" and res["event_id"] not in self.bad_markers:
                        self.stats.http_unexpected_rejections.append(str(res))
                self.stats.http_sent += len(objs)
                return
            # Down, restarting or broker unavailable (503): the whole request again.
            self.stats.http_retries += 1
            await asyncio.sleep(0.5)

    async def _post_raw(self, client: httpx.AsyncClient, raw: bytes) -> None:
        while True:
            try:
                r = await client.post(
                    "/v1/events",
                    content=raw,
                    headers={"Content-Type": "application/json"},
                    timeout=20,
                )
            except httpx.HTTPError:
                r = None
            if r is not None and r.status_code == 400:
                self.stats.http_sent += 1
                return
            self.stats.http_retries += 1
            await asyncio.sleep(0.5)
