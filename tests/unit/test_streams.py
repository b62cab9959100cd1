"""Stream slots (per-token and total limits), their refusals and leased SSE responses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from services.notify import sse
from shared.settings import SettingsError, load_settings
from shared.streams import EventStreamResponse, StreamRefused, StreamSlots

ops = st.lists(
    st.one_of(
        st.tuples(st.just("open"), st.integers(0, 3)),
        st.tuples(st.just("close"), st.integers(0, 50)),
    ),
    max_size=60,
)


@given(per_token=st.integers(1, 4), total=st.integers(1, 8), steps=ops)
def test_slots_refuse_exactly_beyond_either_limit(
    per_token: int, total: int, steps: list[tuple[str, int]]
) -> None:
    slots = StreamSlots("test", per_token, total, "alert streams")
    held: list[tuple[int, Any]] = []  # (token, release) of open streams
    for op, n in steps:
        if op == "close":
            if held:
                _token, release = held.pop(n % len(held))
                release()
                release()  # a second release gives nothing back twice
            continue
        mine = sum(1 for t, _ in held if t == n)
        try:
            held.append((n, slots.acquire(f"kpi_token_{n}")))
        except StreamRefused as refused:
            if mine >= per_token:
                assert (refused.reason, refused.status_code, refused.limit) == (
                    "per_token",
                    429,
                    per_token,
                )
            else:
                assert len(held) >= total
                assert (refused.reason, refused.status_code) == ("capacity", 503)
        else:
            assert mine < per_token and len(held) <= total
        assert slots.open == len(held)


def test_refusal_answer_is_a_problem_with_retry_after() -> None:
    slots = StreamSlots("test", 1, 10, "alert streams")
    slots.acquire("kpi_a")
    with pytest.raises(StreamRefused) as caught:
        slots.acquire("kpi_a")
    request = Request({"type": "http", "method": "GET", "path": "/v1/alerts/stream"})
    answer = caught.value.response(request)
    assert answer.status_code == 429 and answer.headers["retry-after"] == "5"
    assert answer.headers["content-type"] == "application/problem+json"
    body = orjson.loads(answer.body)
    assert body["status"] == 429 and body["type"].endswith(":rate-limited")
    assert body["code"] == "too_many_streams" and body["limit"] == 1
    assert body["instance"] == "/v1/alerts/stream"
    assert "at most 1 per token" in body["detail"]
    assert "kpi_a" not in body["detail"]


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


@pytest.mark.parametrize("fail_at", [0, 2])
async def test_a_leased_response_gives_its_slot_back_when_the_client_goes(fail_at: int) -> None:
    """Gone before the first byte (the body never started: its own `finally` cannot run) or
    in the middle: the body is closed and the slot released once."""
    slots = StreamSlots("test", 1, 1, "alert streams")
    release = slots.acquire("kpi_a")
    closed: list[bool] = []

    async def body() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b": keep-alive\n\n"
        finally:
            closed.append(True)

    sent: list[Message] = []

    async def send(message: Message) -> None:
        if len(sent) == fail_at:
            raise OSError("connection reset")
        sent.append(message)

    scope = {"type": "http", "asgi": {"spec_version": "2.4"}}
    with pytest.raises(ClientDisconnect):
        await EventStreamResponse(body(), release)(scope, _receive, send)
    assert slots.open == 0
    assert closed == ([] if fail_at == 0 else [True])
    slots.acquire("kpi_a")  # the slot is free again


def test_revoked_and_scope_frames() -> None:
    revoked = sse.revoked_frame(401, "invalid or revoked token")
    assert revoked.startswith(b"event: revoked\ndata: ") and b"id:" not in revoked
    data = orjson.loads(revoked.split(b"data: ")[1])
    assert data == {"reason": "token_revoked", "status": 401, "detail": "invalid or revoked token"}
    assert orjson.loads(sse.revoked_frame(403, "x").split(b"data: ")[1])["reason"] == "forbidden"
    scope = sse.scope_frame({"south", "north"})
    assert scope == b'event: scope\ndata: {"team_ids":["north","south"]}\n\n'


def test_stream_settings_have_defaults_and_name_the_variable_when_bad() -> None:
    settings = load_settings()
    assert (settings.stream_max_per_token, settings.stream_recheck_seconds) == (5, 30.0)
    assert settings.notify_stream_max_subscribers == 1000
    assert settings.dashboard_stream_pool == 500
    assert load_settings(stream_recheck_seconds="2m").stream_recheck_seconds == 120.0
    with pytest.raises(SettingsError, match="KPI_STREAM_RECHECK_SECONDS"):
        load_settings(stream_recheck_seconds="0")
    with pytest.raises(SettingsError, match="KPI_STREAM_MAX_PER_TOKEN"):
        load_settings(stream_max_per_token=0)
