"""The published JSON Schemas (docs/schemas/) are exactly what the models in shared/ generate."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import orjson
import pytest

from shared import schemas
from shared.deadletter import DeadLetterRecord, Source, deadletter_value, unprocessable_value
from shared.events import EVENT_TYPES, InvalidEvent

AT = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)


def test_committed_schemas_match_the_models() -> None:
    problems = schemas.drift()
    assert not problems, (
        "docs/schemas/ drifted from the models in shared/; regenerate with "
        f"`{schemas.REGENERATE}` (or `make schemas`) and commit: {problems}"
    )


def test_drift_names_a_changed_a_missing_and_an_extra_file(tmp_path: Path) -> None:
    schemas.write(tmp_path)
    assert schemas.drift(tmp_path) == []
    (tmp_path / "events" / "ticket.closed.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "kpi.scores.json").unlink()
    (tmp_path / "old.json").write_text("{}\n", encoding="utf-8")
    assert schemas.drift(tmp_path) == [
        "kpi.scores.json: missing",
        "old.json: no model generates it",
        "events/ticket.closed.json: differs from the model",
    ]
    assert schemas.main(["--check"]) == 0


def test_one_schema_per_event_type_requires_its_type() -> None:
    texts = schemas.generate()
    for event_type in EVENT_TYPES:
        schema = json.loads(texts[schemas.event_schema_file(event_type)])
        assert schema["properties"]["type"]["const"] == event_type
        assert {"event_id", "type", "occurred_at"} <= set(schema["required"])
        assert schema.get("description"), f"{event_type} has no description"


def test_score_ranges_are_published() -> None:
    texts = schemas.generate()
    csat = json.loads(texts["events/survey.csat.json"])["properties"]["score"]
    nps = json.loads(texts["events/survey.nps.json"])["properties"]["score"]
    assert (csat["minimum"], csat["maximum"]) == (1, 5)
    assert (nps["minimum"], nps["maximum"]) == (0, 10)


@pytest.mark.parametrize(
    "raw", [b'{"type": "nope"}', b"\xff\xfe not utf-8", b"x" * (800 * 1024)], ids=repr
)
def test_the_deadletter_writer_keeps_to_the_published_record(raw: bytes) -> None:
    error = InvalidEvent.single("unknown_type", "no such type", field="type")
    for source in (Source("kafka", "helpdesk.tickets", 0, 7), Source("http", vendor="zammad")):
        DeadLetterRecord.model_validate(orjson.loads(deadletter_value(raw, error, source, AT)))
    poison = unprocessable_value(raw, ValueError("boom"), Source("replay"), AT, service="scoring")
    DeadLetterRecord.model_validate(orjson.loads(poison))
