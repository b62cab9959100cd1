"""Pure helpers of the scoring engine: payload hash, clock maths, kpi.scores shape."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import orjson
import pytest

from services.scoring.config import ScoringConfig
from services.scoring.engine.handlers import payload_hash
from services.scoring.engine.relay import next_local_midnight, score_message
from services.scoring.kpi.grading import evaluate_all
from services.scoring.kpi.windows import parse_window
from shared.catalogue import KPI_KEYS
from shared.events import decode_event, encode_event
from shared.settings import load_settings

RAW = {
    "event_id": "e1",
    "type": "survey.csat",
    "occurred_at": "2026-03-08T03:00:00-04:00",
    "ticket_id": "t1",
    "score": 4,
}


def test_payload_hash_ignores_ingest_envelope_and_key_order() -> None:
    plain = decode_event(orjson.dumps(RAW))
    enveloped = decode_event(orjson.dumps({**RAW, "_ingest": {"via": "http"}}))
    reordered = decode_event(orjson.dumps(dict(reversed(list(RAW.items())))))
    assert payload_hash(plain) == payload_hash(enveloped) == payload_hash(reordered)
    changed = decode_event(orjson.dumps({**RAW, "score": 5}))
    assert payload_hash(changed) != payload_hash(plain)
    assert len(payload_hash(plain)) == 64
    assert encode_event(plain) == encode_event(enveloped)


@pytest.mark.parametrize(
    ("now", "tz", "want"),
    [
        # Shanghai is UTC+8: 2026-03-31 17:00 UTC is already April 1st 01:00 local.
        (datetime(2026, 3, 31, 17, 0, tzinfo=UTC), "Asia/Shanghai", "2026-04-01T16:00:00+00:00"),
        # New York springs forward on 2026-03-08: that local midnight is still EST (-05:00).
        (datetime(2026, 3, 7, 12, 0, tzinfo=UTC), "America/New_York", "2026-03-08T05:00:00+00:00"),
        (datetime(2026, 3, 8, 12, 0, tzinfo=UTC), "America/New_York", "2026-03-09T04:00:00+00:00"),
    ],
)
def test_next_local_midnight(now: datetime, tz: str, want: str) -> None:
    assert next_local_midnight(now, ZoneInfo(tz)).isoformat() == want


def test_alert_window_days() -> None:
    def days(window: str) -> int:
        return ScoringConfig.from_settings(load_settings(alert_window=window)).alert_window_days

    assert days("30d") == 31
    assert days("7d") == 8
    assert days("qtd") == 93


def test_score_message_shape() -> None:
    window = parse_window("30d", date(2026, 4, 1))
    values = evaluate_all({"record_accuracy": (1.0, 2)}, window)
    body = orjson.loads(
        score_message(
            "s1",
            None,
            window,
            "Asia/Shanghai",
            date(2026, 4, 1),
            datetime(2026, 4, 1, 1, 2, 3, tzinfo=UTC),
            "events",
            values,
        )
    )
    assert body["window"] == {
        "name": "30d",
        "from": "2026-03-03",
        "to": "2026-04-01",
        "timezone": "Asia/Shanghai",
    }
    assert body["computed_at"] == "2026-04-01T01:02:03.000000Z"
    assert body["team_id"] is None and body["reason"] == "events" and body["as_of"] == "2026-04-01"
    assert set(body["kpis"]) == set(KPI_KEYS)
    assert body["kpis"]["record_accuracy"]["value"] == 0.5
    assert body["kpis"]["record_accuracy"]["grade"] == "insufficient_data"
