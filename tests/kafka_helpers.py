"""Test helpers: produce and consume with deadlines (never sleeps as synchronisation)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

# Consumer-group session timeout of the services and consumers the tests start. The embedded
# broker (Tansu) answers a group's first JoinGroup only after half the session timeout: the
# services' default 10 s costs 5 s per start, this 1.5 s. Heartbeats go every 600 ms or less.
SESSION_TIMEOUT_MS = 3000


async def produce(
    bootstrap: str,
    topic: str,
    values: Iterable[bytes],
    key: Callable[[bytes], bytes | None] | None = None,
) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    await producer.start()
    count = 0
    try:
        futures = []
        for value in values:
            futures.append(await producer.send(topic, value, key=key(value) if key else None))
            count += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return count


async def consume_until(
    bootstrap: str,
    topic: str,
    done: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
    timeout: float = 30.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read a topic from the start until ``done(records)`` holds or the deadline passes.

    Its partitions are assigned, not joined as a group: no wait for the broker's group join."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        await consumer.topics()
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        assert parts, f"topic {topic} not found"
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        while time.monotonic() < deadline and not done(records):
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                records.extend(recs)
    finally:
        await consumer.stop()
    return records


async def wait_for(
    predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.1
) -> None:
    """Poll a (sync or async) predicate until truthy; fail with a clear message at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout:.0f}s")
