"""Ingest against the real broker: every type flows, bad input is dead-lettered, nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.app import build_app
from services.ingest.replay import replay_deadletter
from shared.deadletter import Source, deadletter_value
from shared.events import InvalidEvent, decode_event
from shared.settings import load_settings
from shared.topics import Topics
from tests.kafka_helpers import SESSION_TIMEOUT_MS, wait_for
from tests.service_helpers import ADMIN_TOKEN, service_env, start_service, wait_status

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
Coord = tuple[str, int, int]


# ----------------------------------------------------------------------- helpers


def ev(event_id: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": kind,
        "occurred_at": "2026-03-01T09:30:00+08:00",
        **fields,
    }


def all_types(prefix: str, ticket: str = "T-1") -> list[tuple[str, dict[str, Any]]]:
    """One event of every SPEC §2 type with the raw topic it belongs on."""
    t, s = "helpdesk.tickets", "helpdesk.surveys"
    return [
        (t, ev(f"{prefix}-1", "ticket.created", ticket_id=ticket, specialist_id="s1",
               channel="web")),
        (t, ev(f"{prefix}-2", "ticket.assigned", ticket_id=ticket, specialist_id="s1")),
        (t, ev(f"{prefix}-3", "ticket.first_response", ticket_id=ticket, specialist_id="s1")),
        (t, ev(f"{prefix}-4", "ticket.closed", ticket_id=ticket, specialist_id="s1",
               resolved=True)),
        (t, ev(f"{prefix}-5", "ticket.reopened", ticket_id=ticket)),
        (t, ev(f"{prefix}-6", "ticket.followup", ticket_id=ticket, specialist_id="s1")),
        (t, ev(f"{prefix}-7", "record.audited", specialist_id="s1", accurate=True)),
        (s, ev(f"{prefix}-8", "survey.csat", ticket_id=ticket, score=5)),
        (s, ev(f"{prefix}-9", "survey.nps", specialist_id="s1", score=3)),
        (s, ev(f"{prefix}-10", "survey.peer_review", specialist_id="s1", reviewer_id="s2",
               score=4)),
        (s, ev(f"{prefix}-11", "survey.training", session_id="S", specialist_id="s1",
               session_at="2026-02-20T10:00:00Z", score=5)),
    ]  # fmt: skip


# Every bad-input class of SPEC §2 with the code and field path it must be reported with.
BAD: list[tuple[bytes, str, str]] = [
    (b"\x00\xffnot json at all", "not_json", "$"),
    (b"{broken", "not_json", "$"),
    (b'"just a string"', "not_object", "$"),
    (orjson.dumps(ev("b1", "ticket.exploded", ticket_id="T")), "unknown_type", "type"),
    (orjson.dumps({"event_id": "b2", "occurred_at": "2026-03-01T00:00:00Z"}), "missing_field",
     "type"),
    (orjson.dumps(ev("b3", "ticket.closed", ticket_id="T", specialist_id="s")), "missing_field",
     "resolved"),
    (orjson.dumps(ev("b4", "survey.csat", ticket_id="T", score="5")), "wrong_type", "score"),
    (orjson.dumps(ev("b5", "survey.nps", ticket_id="T", score=11)), "out_of_range", "score"),
    (orjson.dumps({**ev("b6", "ticket.reopened", ticket_id="T"),
                   "occurred_at": "2026-03-01T09:30:00"}), "naive_timestamp", "occurred_at"),
    (orjson.dumps({**ev("b7", "ticket.reopened", ticket_id="T"), "occurred_at": "soon"}),
     "invalid_value", "occurred_at"),
    (orjson.dumps(ev("b8", "ticket.reopened", ticket_id="T", note="x" * 70_000)), "oversized",
     "$"),
]  # fmt: skip


class Outputs:
    """Reads kpi.events and kpi.deadletter by assignment (no group join) as they grow."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.topics = topics
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        self.events: list[dict[str, Any]] = []
        self.events_keys: list[bytes | None] = []
        self.letters: list[dict[str, Any]] = []

    async def __aenter__(self) -> Outputs:
        await self.consumer.start()
        tps = []
        for topic in (self.topics.events, self.topics.deadletter):
            await self.consumer.topics()
            parts = self.consumer.partitions_for_topic(topic) or set()
            tps += [TopicPartition(topic, p) for p in parts]
        assert len({tp.topic for tp in tps}) == 2, f"output topics not found: {tps}"
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def poll(self) -> int:
        batches = await self.consumer.getmany(timeout_ms=200, max_records=5000)
        for tp, recs in batches.items():
            for rec in recs:
                try:
                    body = orjson.loads(rec.value or b"null")
                except orjson.JSONDecodeError:
                    continue  # a hand-written non-letter in the replay test
                if tp.topic == self.topics.events:
                    self.events.append(body)
                    self.events_keys.append(rec.key)
                else:
                    self.letters.append(body)
        return sum(len(r) for r in batches.values())

    def covered(self) -> list[Coord]:
        coords = [
            (e["_ingest"]["topic"], e["_ingest"]["partition"], e["_ingest"]["offset"])
            for e in self.events
            if e["_ingest"]["via"] == "kafka"
        ]
        coords += [
            (d["source"]["topic"], d["source"]["partition"], d["source"]["offset"])
            for d in self.letters
            if d["source"]["via"] == "kafka"
        ]
        return coords

    async def until(self, done: Any, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"outputs incomplete after {timeout:.0f}s: "
                    f"{len(self.events)} events, {len(self.letters)} dead letters"
                )
            await self.poll()


async def produce_raw(
    bootstrap: str, messages: Iterable[tuple[str, bytes | None, bytes | None]]
) -> list[Coord]:
    """Produce (topic, key, value) and return where each landed."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5, acks="all"
    )
    await producer.start()
    try:
        futures = [await producer.send(t, v, key=k) for t, k, v in messages]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.topic, m.partition, m.offset) for m in metas]


def ingest_settings(database_url: str, bootstrap: str, topics: Topics, **extra: Any) -> Any:
    return load_settings(
        database_url=database_url,
        kafka_bootstrap=bootstrap,
        topic_prefix=topics.prefix,
        bootstrap_admin_token=ADMIN_TOKEN,
        ingest_session_timeout_ms=SESSION_TIMEOUT_MS,
        **extra,
    )


@contextlib.asynccontextmanager
async def running_ingest(settings_: Any) -> AsyncIterator[tuple[FastAPI, AsyncClient]]:
    """The ingest app in this process with its lifespan (consumer task included)."""
    app = build_app(settings_)
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield app, client


async def wait_consuming(app: FastAPI, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while app.state.pipeline.consumer is None or not app.state.pipeline.consumer.assignment():
        assert time.monotonic() < deadline, f"consumer not assigned: {app.state.pipeline.problem()}"
        await asyncio.sleep(0.1)


# ------------------------------------------------------------------------- tests


async def test_every_type_flows_and_every_bad_class_is_dead_lettered(
    database_url: str, bootstrap: str, created_topics: Topics, clean_db: Any
) -> None:
    topics = created_topics
    good = all_types("g")
    # One key for everything: good and bad share a partition, so "keeps flowing" is tested.
    messages: list[tuple[str, bytes | None, bytes | None]] = []
    for i, (topic, obj) in enumerate(good):
        messages.append((topics.raw_for(topic), b"same", orjson.dumps(obj)))
        if i < len(BAD):
            messages.append((topics.tickets, b"same", BAD[i][0]))
    messages += [(topics.surveys, b"same", raw) for raw, _, _ in BAD[len(good) :]]
    messages.append((topics.tickets, b"same", None))  # tombstone
    messages.append((topics.tickets, b"same", orjson.dumps(ev("last", "ticket.reopened",
                                                              ticket_id=" T-9 "))))  # fmt: skip

    async with running_ingest(ingest_settings(database_url, bootstrap, topics)) as (_app, client):
        coords = await produce_raw(bootstrap, messages)
        async with Outputs(bootstrap, topics) as out:
            await out.until(lambda: len(out.covered()) >= len(messages))
            assert sorted(out.covered()) == sorted(coords)

            by_id = {
                e["event_id"]: (e, k) for e, k in zip(out.events, out.events_keys, strict=True)
            }
            for topic, obj in good:
                published, key = by_id[obj["event_id"]]
                assert decode_event(orjson.dumps(published)) == decode_event(orjson.dumps(obj))
                assert published["_ingest"]["via"] == "kafka"
                assert published["_ingest"]["topic"] == topics.raw_for(topic)
                assert key == (obj.get("ticket_id") or obj["specialist_id"]).encode()
            assert by_id["last"][0]["ticket_id"] == "T-9" and by_id["last"][1] == b"T-9"

            got = sorted((d["code"], d["errors"][0]["field"]) for d in out.letters)
            want = sorted([(code, field) for _, code, field in BAD] + [("not_json", "$")])
            assert got == want
            for letter in out.letters:
                assert letter["source"]["via"] == "kafka" and letter["replays"] == 0
                assert letter["reason"] and letter["dead_lettered_at"].endswith("Z")
            binary = next(d for d in out.letters if d["original_encoding"] == "base64")
            assert binary["code"] == "not_json"

        # Counters are upserted right after the broker ack, so they can trail the topic.
        async def counted() -> bool:
            body = (await client.get("/v1/stats", headers=AUTH)).json()
            return bool(body["totals"]["in"] >= len(messages))

        await wait_for(counted, timeout=30)
        stats = (await client.get("/v1/stats", headers=AUTH)).json()
        assert stats["totals"]["in"] == len(messages)
        assert stats["totals"]["published"] == len(good) + 1
        assert stats["totals"]["deadlettered"] == len(BAD) + 1
        assert stats["by_reason"]["not_json"] == 3 and stats["by_reason"]["oversized"] == 1
        tickets = stats["by_topic"][topics.tickets]
        assert tickets["in"] == tickets["published"] + tickets["deadlettered"]
        metrics = (await client.get("/metrics")).text
        assert f'kpi_ingest_messages_total{{outcome="published",topic="{topics.surveys}"}}' in (
            metrics
        )
        assert "kpi_ingest_deadletter_total" in metrics
        ready = (await client.get("/readyz")).json()
        assert ready["checks"]["ingest"] == "ok"


# Arbitrary bytes, arbitrary JSON, and near-valid events.
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=12,
)
_near = st.builds(
    lambda kind, score, ts, extra: json.dumps(
        {**ev("h", kind, ticket_id="T", specialist_id="s", reviewer_id="r", session_id="x",
              session_at=ts, score=score, resolved=True, accurate=False), "occurred_at": ts,
         **extra}
    ).encode(),
    st.sampled_from(["ticket.closed", "survey.csat", "survey.nps", "survey.training", "nope"]),
    st.one_of(st.integers(-1, 12), st.sampled_from(["4", True, None, 4.0])),
    st.sampled_from(["2026-03-01T00:00:00Z", "2026-03-01T00:00:00", "x", "2026-02-30T00:00:00Z"]),
    st.dictionaries(st.text(max_size=6), st.integers(), max_size=2),
)  # fmt: skip
_message = st.one_of(
    st.binary(max_size=200),
    _json.map(lambda v: json.dumps(v).encode()),
    _near,
)


@pytest.fixture(scope="module")
def hypo_service(
    database_url: str, bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    topics = Topics(f"hyp{time.monotonic_ns() % 10**9}.")
    from shared.kafka import ensure_topics

    asyncio.run(ensure_topics(bootstrap, 3, topics.all))
    env = service_env(
        database_url,
        bootstrap,
        KPI_TOPIC_PREFIX=topics.prefix,
    )
    svc = start_service("ingest", env, tmp_path_factory.mktemp("hypo"))
    try:
        wait_status(f"{svc.url}/readyz", 200)
        yield svc, topics
    finally:
        svc.stop()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(messages=st.lists(_message, min_size=1, max_size=25))
def test_conservation_for_arbitrary_input(
    hypo_service: Any, bootstrap: str, messages: list[bytes]
) -> None:
    """Every input message comes out exactly once, published or dead-lettered; still healthy."""
    svc, topics = hypo_service

    async def run() -> tuple[list[Coord], list[Coord]]:
        sent = await produce_raw(bootstrap, [(topics.tickets, None, m) for m in messages])
        wanted = set(sent)
        async with Outputs(bootstrap, topics) as out:
            await out.until(lambda: wanted <= set(out.covered()), timeout=30)
            return sent, [c for c in out.covered() if c in wanted]

    sent, got = asyncio.run(run())
    assert sorted(got) == sorted(sent)  # exactly once each without crashes
    assert svc.proc is not None and svc.proc.poll() is None
    ready = httpx.get(f"{svc.url}/readyz", timeout=10).json()
    assert ready["checks"]["ingest"] == "ok", ready


def test_sigkill_mid_stream_loses_nothing(
    database_url: str, bootstrap: str, tmp_path: Path
) -> None:
    """Kill -9 while consuming, restart: every input is published or dead-lettered."""
    topics = Topics(f"kill{time.monotonic_ns() % 10**9}.")
    from shared.kafka import ensure_topics

    asyncio.run(ensure_topics(bootstrap, 3, topics.all))
    total = 60_000
    messages: list[tuple[str, bytes | None, bytes | None]] = []
    for i in range(total):
        topic = topics.tickets if i % 2 else topics.surveys
        if i % 10 == 0:
            messages.append((topic, None, b"{bad %d" % i))
        elif i % 2:
            obj = ev(f"k{i}", "ticket.closed", ticket_id=f"T{i % 500}", specialist_id="s",
                     resolved=True, source="crm", channel="phone", note="x" * 150)  # fmt: skip
            messages.append((topic, f"T{i % 500}".encode(), orjson.dumps(obj)))
        else:
            obj = ev(f"k{i}", "survey.csat", ticket_id=f"T{i % 500}", score=4, note="y" * 200)
            messages.append((topic, None, orjson.dumps(obj)))
    sent = asyncio.run(produce_raw(bootstrap, messages))
    env = service_env(
        database_url,
        bootstrap,
        KPI_TOPIC_PREFIX=topics.prefix,
    )

    async def progress(out: Outputs, at_least: int) -> None:
        await out.until(lambda: len(out.covered()) >= at_least, timeout=60)

    svc = start_service("ingest", env, tmp_path)
    try:

        async def first_part() -> None:
            async with Outputs(bootstrap, topics) as out:
                await progress(out, 1000)

        asyncio.run(first_part())
        assert svc.proc is not None
        svc.proc.send_signal(signal.SIGKILL)
        svc.proc.wait(timeout=10)
    finally:
        svc.stop()

    async def snapshot() -> int:
        async with Outputs(bootstrap, topics) as out:
            empty = 0
            while empty < 3:  # the killed service wrote nothing more: read to the end
                empty = 0 if await out.poll() else empty + 1
            return len(set(out.covered()))

    done_at_kill = asyncio.run(snapshot())
    # Otherwise the kill hit an idle service and the test would prove nothing.
    assert done_at_kill < total, "the service finished before it was killed"
    print(f"covered at kill: {done_at_kill}/{total}")
    svc = start_service("ingest", env, tmp_path)
    try:

        async def rest() -> list[Coord]:
            async with Outputs(bootstrap, topics) as out:
                await out.until(lambda: set(sent) <= set(out.covered()), timeout=120)
                return out.covered()

        covered = asyncio.run(rest())
    finally:
        svc.stop()
    assert set(covered) == set(sent)  # nothing lost, nothing invented (duplicates allowed)


async def test_replay_deadletter_after_a_fix(bootstrap: str, created_topics: Topics) -> None:
    topics = created_topics
    src = Source("kafka", topics.tickets, 0, 7)
    from shared.db import utcnow

    fixed = orjson.dumps(ev("r-ok", "ticket.reopened", ticket_id="T-7"))
    still_bad = orjson.dumps({**ev("r-bad", "ticket.reopened", ticket_id="T"), "occurred_at": "x"})
    other = orjson.dumps(ev("r-other", "ticket.reopened", ticket_id="T-8"))
    old = InvalidEvent.single("unknown_type", "unknown event type", field="type")
    letters = [
        (topics.deadletter, b"T-7", deadletter_value(fixed, old, src, utcnow())),
        (topics.deadletter, b"T", deadletter_value(still_bad, old, src, utcnow())),
        (
            topics.deadletter,
            None,
            deadletter_value(other, InvalidEvent.single("oversized", "big"), src, utcnow()),
        ),
        (topics.deadletter, None, b"not a dead letter"),
    ]
    await produce_raw(bootstrap, letters)

    dry = await replay_deadletter(bootstrap, topics, reason="unknown_type", dry_run=True,
                                  idle_seconds=2)  # fmt: skip
    assert (dry.scanned, dry.matched, dry.republished, dry.deadlettered) == (4, 2, 1, 1)
    assert dry.unreadable == 1

    seen: list[tuple[int, int | None]] = []
    summary = await replay_deadletter(
        bootstrap, topics, reason="unknown_type", idle_seconds=2,
        progress=lambda done, total: seen.append((done, total)),
    )  # fmt: skip
    assert (summary.republished, summary.deadlettered) == (1, 1)
    assert summary.by_code == {"invalid_value": 1}
    assert seen and seen[-1][0] == 4

    async with Outputs(bootstrap, topics) as out:
        await out.until(lambda: len(out.events) >= 1 and len(out.letters) >= 4, timeout=20)
        await out.poll()
        (event,) = out.events
        assert event["event_id"] == "r-ok" and event["_ingest"]["via"] == "replay"
        assert event["_ingest"]["offset"] == 7 and out.events_keys[0] == b"T-7"
        again = [d for d in out.letters if d["replays"] == 1]
        assert len(out.letters) == 4
        assert len(again) == 1 and again[0]["replays"] == 1
        assert again[0]["code"] == "invalid_value" and again[0]["source"]["via"] == "kafka"


async def test_unstorable_text_on_raw_topics_is_dead_lettered_once_and_the_rest_flows(
    database_url: str, bootstrap: str, created_topics: Topics, clean_db: Any
) -> None:
    topics = created_topics
    good = all_types("n")
    bad: list[tuple[bytes, str]] = [
        (orjson.dumps(ev("n-nul", "ticket.reopened", ticket_id="T\x00")), "ticket_id"),
        (json.dumps(ev("n-sur", "ticket.reopened", ticket_id="T\ud800")).encode(), "ticket_id"),
        (b'{"event_id": "n-cesu", "type": "ticket.reopened", "ticket_id": "\xed\xa0\x80",'
         b' "occurred_at": "2026-03-01T09:30:00Z"}', "ticket_id"),
        (orjson.dumps(ev("n-ctl", "ticket.assigned", ticket_id="T", specialist_id="s\x1b[2J")),
         "specialist_id"),
        (orjson.dumps(ev("n-src", "ticket.reopened", ticket_id="T", source="crm\x00")), "source"),
        (orjson.dumps(ev("n-c1", "survey.nps", specialist_id="s\x85t", score=9)),
         "specialist_id"),
    ]  # fmt: skip
    # One key: the bad ones sit between good ones of the same partition and batch.
    messages: list[tuple[str, bytes | None, bytes | None]] = []
    for i, (topic, obj) in enumerate(good):
        messages.append((topics.raw_for(topic), b"same", orjson.dumps(obj)))
        if i < len(bad):
            messages.append((topics.raw_for(topic), b"same", bad[i][0]))

    async with running_ingest(ingest_settings(database_url, bootstrap, topics)):
        coords = await produce_raw(bootstrap, messages)
        async with Outputs(bootstrap, topics) as out:
            await out.until(lambda: len(out.covered()) >= len(messages))
            await out.poll()
            assert sorted(out.covered()) == sorted(coords)  # each exactly once
            assert sorted(e["event_id"] for e in out.events) == sorted(
                o["event_id"] for _, o in good
            )
            assert sorted((d["code"], d["errors"][0]["field"]) for d in out.letters) == sorted(
                ("invalid_text", field) for _, field in bad
            )


async def test_replay_of_a_letter_holding_a_lone_surrogate(
    bootstrap: str, created_topics: Topics
) -> None:
    """A letter orjson cannot parse (its original holds \\ud800) is dead-lettered again, named."""
    topics = created_topics
    original = json.dumps(ev("r-sur", "ticket.reopened", ticket_id="T\udc00"), ensure_ascii=False)
    letter = json.dumps(
        {
            "original": original,
            "original_encoding": "utf-8",
            "code": "not_json",
            "source": {"via": "kafka", "topic": topics.tickets, "partition": 0, "offset": 3},
            "replays": 0,
        }
    ).encode()
    await produce_raw(bootstrap, [(topics.deadletter, b"T", letter)])

    summary = await replay_deadletter(bootstrap, topics, reason="not_json", idle_seconds=2)
    assert (summary.matched, summary.deadlettered, summary.unreadable) == (1, 1, 0)
    assert summary.by_code == {"invalid_text": 1}
    async with Outputs(bootstrap, topics) as out:
        await out.until(lambda: len(out.letters) >= 1, timeout=20)
        (again,) = out.letters  # the hand-written one is not a record orjson can read
        assert again["replays"] == 1 and again["source"]["offset"] == 3
        assert again["errors"][0]["field"] == "ticket_id"
        assert again["errors"][0]["code"] == "invalid_text"
