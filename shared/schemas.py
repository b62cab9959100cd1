"""JSON Schemas of every message that crosses a boundary, generated from the models in shared/.

``python -m shared.schemas`` (or ``make schemas``) writes them into ``docs/schemas/``;
``--check`` only compares, and the unit test ``tests/unit/test_contract_schemas.py`` fails
when the committed files drift from the models.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, get_args

from pydantic import BaseModel, TypeAdapter

from shared.deadletter import DeadLetterRecord
from shared.events.models import EVENT_ADAPTER, Event
from shared.scores import ScoreSnapshot
from shared.webhooks import (
    AlertPayload,
    ChannelTestPayload,
    DigestPayload,
    IncidentPayload,
    ReminderPayload,
)

SCHEMA_DIR: Final = Path(__file__).resolve().parents[1] / "docs" / "schemas"
DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
REGENERATE: Final = "python -m shared.schemas"

# One model per event type, in the order of the union (SPEC §2's tables).
EVENT_MODELS: Final[tuple[type[BaseModel], ...]] = get_args(get_args(Event)[0])


def _event_type(model: type[BaseModel]) -> str:
    default = model.model_fields["type"].default
    assert isinstance(default, str)
    return default


def _event_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    # `type` has a default in the model (it picks the class) but is required on the wire:
    # without it the decoder cannot tell which event it is (unknown_type).
    schema["required"] = ["type", *schema.get("required", [])]
    return schema


def _batch_schema() -> dict[str, Any]:
    schema = TypeAdapter(Event | list[Event]).json_schema()
    schema["title"] = "EventBatch"
    schema["description"] = (
        "Body of POST /v1/events: one event, or a JSON array of events "
        "(at most KPI_INGEST_MAX_BATCH). Each event is one of the types in $defs, told apart "
        "by `type`; unknown extra fields are ignored."
    )
    return schema


def _event_union_schema() -> dict[str, Any]:
    schema = EVENT_ADAPTER.json_schema()
    schema["title"] = "Event"
    schema["description"] = "Any input event, told apart by `type`."
    return schema


def _serialized(model: type[BaseModel]) -> Callable[[], dict[str, Any]]:
    return lambda: model.model_json_schema(mode="serialization", by_alias=True)


def _generators() -> dict[str, Callable[[], dict[str, Any]]]:
    found: dict[str, Callable[[], dict[str, Any]]] = {
        f"events/{_event_type(m)}.json": (lambda m=m: _event_schema(m))  # type: ignore[misc]
        for m in EVENT_MODELS
    }
    found["events/event.json"] = _event_union_schema
    found["event-batch.json"] = _batch_schema
    found["kpi.scores.json"] = _serialized(ScoreSnapshot)
    found["kpi.deadletter.json"] = _serialized(DeadLetterRecord)
    found["webhook-alert.json"] = _serialized(AlertPayload)
    found["webhook-incident.json"] = _serialized(IncidentPayload)
    found["webhook-channel-test.json"] = _serialized(ChannelTestPayload)
    found["webhook-reminder.json"] = _serialized(ReminderPayload)
    found["webhook-digest.json"] = _serialized(DigestPayload)
    return found


def event_schema_file(event_type: str) -> str:
    """Path of an event type's schema, relative to docs/schemas/."""
    return f"events/{event_type}.json"


def generate() -> dict[str, str]:
    """Every schema file's text by its path relative to ``docs/schemas/``."""
    texts: dict[str, str] = {}
    for name, make in _generators().items():
        schema = {"$schema": DIALECT, **make()}
        texts[name] = json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    return texts


def drift(directory: Path = SCHEMA_DIR) -> list[str]:
    """Files under ``directory`` that differ from the models, are missing or are extra."""
    wanted = generate()
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*.json")}
    problems = [f"{name}: missing" for name in sorted(wanted.keys() - present)]
    problems += [f"{name}: no model generates it" for name in sorted(present - wanted.keys())]
    problems += [
        f"{name}: differs from the model"
        for name in sorted(wanted.keys() & present)
        if (directory / name).read_text(encoding="utf-8") != wanted[name]
    ]
    return problems


def write(directory: Path = SCHEMA_DIR) -> list[str]:
    """Write every schema file (removing stale ones); return the paths written."""
    wanted = generate()
    for stale in directory.rglob("*.json"):
        if stale.relative_to(directory).as_posix() not in wanted:
            stale.unlink()
    for name, text in wanted.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return sorted(wanted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=REGENERATE, description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report drift (exit 1)")
    args = parser.parse_args(argv)
    if args.check:
        problems = drift()
        for problem in problems:
            print(f"docs/schemas/{problem}", file=sys.stderr)
        return 1 if problems else 0
    for name in write():
        print(f"docs/schemas/{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
