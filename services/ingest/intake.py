"""Pure ingest rules: classify a raw message, build the kpi.events envelope, key and dead letter."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from shared.deadletter import Source, deadletter_value, decode_original, rfc3339
from shared.events import (
    MAX_EVENT_BYTES,
    NOT_JSON,
    Event,
    FieldError,
    InvalidEvent,
    decode_event,
    encode_event,
    partition_key,
)
from shared.text import scrub, text_problem

# Not one of the validation codes: a bug in this service while handling one message.
# It still goes to the dead-letter topic so one poison message cannot stall a partition.
INTERNAL_ERROR: Final = "internal_error"

OUTCOME_PUBLISHED: Final = "published"
OUTCOME_DEADLETTERED: Final = "deadlettered"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish: either an event for kpi.events or a dead letter."""

    deadletter: bool
    key: bytes | None
    value: bytes
    stats_topic: str
    code: str | None = None
    event_id: str | None = None
    errors: tuple[FieldError, ...] = ()


def envelope(event: Event, source: Source, ingested_at: dt.datetime) -> bytes:
    """Canonical event JSON plus one ``_ingest`` object (ignored by ``decode_event``)."""
    canonical = encode_event(event)
    meta = orjson.dumps({**source.as_dict(), "ingested_at": rfc3339(ingested_at)})
    # encode_event always yields a non-empty object, so splicing before its closing
    # brace is valid JSON and saves re-serialising the whole event.
    return canonical[:-1] + b',"_ingest":' + meta + b"}"


def classify(
    raw: bytes | None,
    key: bytes | None,
    source: Source,
    at: dt.datetime,
    *,
    replays: int = 0,
    max_bytes: int = MAX_EVENT_BYTES,
) -> Outgoing:
    """Decide what one input message becomes; total: never raises for any input."""
    data = raw if raw is not None else b""
    try:
        if raw is None:
            raise InvalidEvent.single(NOT_JSON, "message has no value (tombstone)")
        event = decode_event(data, max_bytes=max_bytes)
        return Outgoing(
            deadletter=False,
            key=partition_key(event),
            value=envelope(event, source, at),
            stats_topic=source.stats_topic,
            event_id=event.event_id,
        )
    except InvalidEvent as exc:
        error = exc
    except Exception as exc:  # a bug in one message must not stall the partition
        # scrub: an exception may quote the input, and the dead letter must stay encodable.
        error = InvalidEvent.single(INTERNAL_ERROR, scrub(f"{type(exc).__name__}: {exc}"[:300]))
    return Outgoing(
        deadletter=True,
        key=key,
        value=deadletter_value(data, error, source, at, replays=replays),
        stats_topic=source.stats_topic,
        code=error.code,
        errors=error.errors,
    )


def classify_item(item: object, source: Source, at: dt.datetime) -> Outgoing:
    """:func:`classify` for an already-parsed JSON value (one item of an HTTP body)."""
    try:
        raw = orjson.dumps(item)
    except orjson.JSONEncodeError:
        # A str holding an unpaired surrogate (the standard library's JSON parser and Python
        # callers let one through) is not UTF-8: escaped as \ud800 it is ASCII JSON that
        # decode_event rejects naming the field, and that the dead letter keeps readable.
        try:
            raw = json.dumps(item, default=repr).encode("ascii")
        except (TypeError, ValueError, RecursionError) as exc:
            raw = scrub(f"{type(item).__name__} that is not JSON: {exc}"[:300]).encode()
    return classify(raw, None, source, at)


def stats_delta(outgoing: Iterable[Outgoing]) -> dict[tuple[str, str, str], int]:
    """(topic, outcome, code) -> count for one batch; code is '' for published events."""
    delta: dict[tuple[str, str, str], int] = {}
    for item in outgoing:
        k = (
            (item.stats_topic, OUTCOME_DEADLETTERED, item.code or INTERNAL_ERROR)
            if item.deadletter
            else (item.stats_topic, OUTCOME_PUBLISHED, "")
        )
        delta[k] = delta.get(k, 0) + 1
    return delta


def merge_delta(
    into: dict[tuple[str, str, str], int], other: Mapping[tuple[str, str, str], int]
) -> None:
    for k, n in other.items():
        into[k] = into.get(k, 0) + n


def replay_outgoing(deadletter: Mapping[str, Any], key: bytes | None, at: dt.datetime) -> Outgoing:
    """Re-validate a dead letter's original: an event (via ``replay``) or a new dead letter.

    A still-invalid original keeps its first source (so its origin is never lost) and
    carries the new reason with ``replays`` incremented.
    """
    src = deadletter.get("source")
    src = src if isinstance(src, Mapping) else {}
    replays = deadletter.get("replays")
    replays = replays + 1 if isinstance(replays, int) and not isinstance(replays, bool) else 1
    partition, offset = src.get("partition"), src.get("offset")
    topic = src.get("topic")
    if isinstance(topic, str) and text_problem(topic) is not None:
        topic = None  # a record edited by hand; this value could not be written back
    via = src.get("via")
    origin = Source(
        via=via if via in ("kafka", "http", "replay") else "replay",
        topic=topic if isinstance(topic, str) else None,
        partition=partition if isinstance(partition, int) else None,
        offset=offset if isinstance(offset, int) else None,
    )
    raw = decode_original(deadletter)
    replay_source = Source("replay", origin.topic, origin.partition, origin.offset)
    result = classify(raw, key, replay_source, at, replays=replays)
    if not result.deadletter:
        return result
    # Same verdict, but the dead letter names where the message first came from.
    error = InvalidEvent(result.errors)
    return Outgoing(
        deadletter=True,
        key=key,
        value=deadletter_value(raw, error, origin, at, replays=replays),
        stats_topic="replay",
        code=result.code,
        errors=result.errors,
    )
