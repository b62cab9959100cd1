"""Alert SSE stream: Last-Event-ID parsing, the replay/reset decision, framing, fan-out."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from services.notify import sse
from services.notify.broadcast import Broadcaster, parse_notification


@given(st.none() | st.text(max_size=30), st.none() | st.text(max_size=30))
def test_parse_last_event_id_matches_reference(header: str | None, query: str | None) -> None:
    # Reference: the header unless blank, else the query; digits only, bigint-sized.
    raw = header if header is not None and header.strip() else query
    got = sse.parse_last_event_id(header, query)
    if raw is None or not raw.strip():
        assert got is None
    elif raw.strip().isascii() and raw.strip().isdigit() and len(raw.strip()) <= 19:
        assert got == int(raw.strip())
    else:
        assert got == "invalid_id"


def test_parse_last_event_id_examples() -> None:
    assert sse.parse_last_event_id("42", "7") == 42
    assert sse.parse_last_event_id("", "7") == 7
    assert sse.parse_last_event_id(None, " 7 ") == 7
    assert sse.parse_last_event_id("-1", None) == "invalid_id"
    assert sse.parse_last_event_id("\u0663", None) == "invalid_id"  # Arabic-Indic 3
    assert sse.parse_last_event_id("9" * 20, None) == "invalid_id"


def _events(ids: list[int]) -> list[tuple[int, dict[str, Any]]]:
    return [(i, {"alert_id": f"a{i}"}) for i in ids]


@given(
    last=st.none() | st.sampled_from(["invalid_id"]) | st.integers(0, 3000),
    newest=st.integers(0, 3000),
    limit=st.integers(1, 50),
    data=st.data(),
)
def test_plan_resume_replays_missed_within_bound_else_resets(
    last: int | str | None, newest: int, limit: int, data: st.DataObject
) -> None:
    missed: list[tuple[int, dict[str, Any]]] = []
    if isinstance(last, int) and last < newest:
        # What the query returns: visible ids in (last, newest], ascending, LIMIT limit + 1.
        visible = data.draw(st.sets(st.integers(last + 1, newest), max_size=limit + 5))
        missed = _events(sorted(visible)[: limit + 1])
    plan = sse.plan_resume(last, newest, missed, limit)  # type: ignore[arg-type]
    assert plan.cursor == newest
    if last is None:
        assert plan == sse.Resume([], None, newest)
    elif isinstance(last, str):
        assert plan == sse.Resume([], "invalid_id", newest)
    elif last > newest:
        assert plan.reset == "unknown_id" and plan.replay == []
    elif len(missed) > limit:
        assert plan.reset == "too_old" and plan.replay == []
    else:
        assert plan.reset is None and plan.replay == missed
        assert all(last < i <= newest for i, _ in plan.replay)


def test_frames_parse_as_server_sent_events() -> None:
    data = {"alert_id": "a\nb", "message": "line1\r\nline2", "n": 1}
    raw = sse.frame("alert", data, 12)
    assert raw.endswith(b"\n\n") and raw.count(b"\n") == 4
    lines = raw.decode().split("\n")
    assert lines[:2] == ["id: 12", "event: alert"]
    assert orjson.loads(lines[2].removeprefix("data: ")) == data
    assert sse.frame("alert", data).startswith(b"event: alert\n")
    assert sse.cursor_frame(5) == b"id: 5\n: cursor\n\n"
    reset = sse.reset_data("too_old", None, " 3" + "9" * 100)
    assert reset["last_event_id"] == ("3" + "9" * 100)[:64]
    assert reset["max_replay"] == sse.REPLAY_MAX_EVENTS


def test_parse_notification_envelope_and_legacy() -> None:
    event = {"alert_id": "x", "team_id": None}
    assert parse_notification(orjson.dumps({"id": 9, "data": event}).decode()) == (9, event)
    assert parse_notification(orjson.dumps(event).decode()) == (None, event)
    assert parse_notification("not json") is None
    assert parse_notification("[1, 2]") is None


async def test_broadcaster_marks_a_stalled_subscriber_lagged() -> None:
    hub = Broadcaster(max_queue=2)
    slow, fast = hub.subscribe(), hub.subscribe()
    for i in range(3):
        hub.publish(i, {"n": i})
        if i < 2:
            assert fast.queue.get_nowait() == (i, {"n": i})
    assert slow.lagged and not fast.lagged
    assert fast.queue.get_nowait() == (2, {"n": 2})
    hub.unsubscribe(slow)
    assert hub.subscribers == 1
    await asyncio.sleep(0)
