"""The `kpi.deadletter` record: one format for every service that dead-letters a message."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Literal, TypeAlias

import orjson
from pydantic import BaseModel, ConfigDict, Field

from shared.events import InvalidEvent
from shared.text import scrub

Via: TypeAlias = Literal["kafka", "http", "replay"]

# The broker and producer cap a request at a few MiB; a base64-inflated oversized input
# is cut so its dead letter always fits (the size is kept in the record).
MAX_ORIGINAL_BYTES: Final = 768 * 1024

# Not a validation code: the message was valid but processing it failed every time (a
# value the database or a handler cannot take). The record names the exception class.
UNPROCESSABLE: Final = "unprocessable"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message came from; ``topic`` is the public (unprefixed) topic name."""

    via: Via
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    # The helpdesk of a native webhook (POST /v1/webhooks/{vendor}); None otherwise.
    vendor: str | None = None

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "via": self.via,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
        }
        if self.vendor is not None:
            found["vendor"] = self.vendor
        return found

    @property
    def stats_topic(self) -> str:
        """Label used by metrics and ``ingest_stats``: the raw topic, else the channel."""
        if self.vendor is not None:
            return f"webhook:{self.vendor}"
        return self.topic if self.via == "kafka" and self.topic else self.via


class DeadLetterError(BaseModel):
    """One reason a message was refused: the field (``$`` for the whole message) and why."""

    model_config = ConfigDict(extra="forbid")

    field: str
    reason: str
    code: str


class DeadLetterSource(BaseModel):
    """Where the message came from (``Source.as_dict``)."""

    model_config = ConfigDict(extra="forbid")

    via: Via
    topic: str | None
    partition: int | None
    offset: int | None
    vendor: str | None = None


class DeadLetterRecord(BaseModel):
    """One kpi.deadletter message (what :func:`deadletter_value` writes); the published
    schema is generated from it and a unit test holds the writer to it."""

    model_config = ConfigDict(extra="forbid")

    original: str = Field(description="the original bytes: UTF-8 text as-is, else base64")
    original_encoding: Literal["utf-8", "base64"]
    code: str = Field(description="the first error's code (e.g. missing_field, not_json)")
    reason: str
    errors: list[DeadLetterError]
    source: DeadLetterSource
    dead_lettered_at: str = Field(description="UTC RFC 3339 with microseconds and Z")
    replays: int = Field(ge=0, description="how many times it was replayed already")
    exception: str | None = Field(
        default=None, description="exception class, when processing (not validation) failed"
    )
    original_truncated: bool | None = Field(
        default=None, description=f"true when the original was cut to {MAX_ORIGINAL_BYTES} bytes"
    )
    original_size: int | None = Field(default=None, description="size of the uncut original")


@lru_cache(maxsize=8)
def rfc3339(moment: dt.datetime) -> str:
    """UTC RFC 3339 with a Z suffix and microseconds, e.g. 2026-03-01T09:30:00.123456Z."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode_original(raw: bytes) -> tuple[str, Literal["utf-8", "base64"], int]:
    """The original bytes as text (UTF-8 as-is, else base64), cut to MAX_ORIGINAL_BYTES."""
    size = len(raw)
    data = raw[:MAX_ORIGINAL_BYTES]
    try:
        return data.decode("utf-8"), "utf-8", size
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), "base64", size


def decode_original(record: Mapping[str, Any]) -> bytes:
    """Inverse of :func:`encode_original` for a dead-letter record."""
    original = record.get("original")
    if not isinstance(original, str):
        raise ValueError("dead letter has no 'original' string")
    if record.get("original_encoding") == "base64":
        try:
            return base64.b64decode(original, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("dead letter 'original' is not valid base64") from None
    return original.encode("utf-8", errors="surrogatepass")


def deadletter_value(
    raw: bytes,
    error: InvalidEvent,
    source: Source,
    at: dt.datetime,
    *,
    replays: int = 0,
    exception: str | None = None,
) -> bytes:
    """The dead-letter record (docs/ingest.md, dead-letter record) as JSON bytes.

    ``exception`` names the exception class when processing (not validation) failed.
    """
    text, encoding, size = encode_original(raw)
    body: dict[str, Any] = {
        "original": text,
        "original_encoding": encoding,
        "code": error.code,
        "reason": str(error),
        "errors": [{"field": e.field, "reason": e.reason, "code": e.code} for e in error.errors],
        "source": source.as_dict(),
        "dead_lettered_at": rfc3339(at),
        "replays": replays,
    }
    if exception is not None:
        body["exception"] = exception
    if size > MAX_ORIGINAL_BYTES:
        body["original_truncated"] = True
        body["original_size"] = size
    return orjson.dumps(body)


def unprocessable_value(
    raw: bytes, exc: BaseException, source: Source, at: dt.datetime, *, service: str
) -> bytes:
    """Dead letter of a message whose processing failed deterministically (poison)."""
    # scrub: an exception may quote the input, and the record must stay encodable.
    reason = scrub(f"{service} could not process it: {type(exc).__name__}: {exc}"[:500])
    return deadletter_value(
        raw,
        InvalidEvent.single(UNPROCESSABLE, reason),
        source,
        at,
        exception=f"{type(exc).__module__}.{type(exc).__qualname__}",
    )
