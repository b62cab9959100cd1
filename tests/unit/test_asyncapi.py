"""docs/asyncapi.yaml: parses, names every topic of shared/topics.py, and every $ref resolves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from shared import schemas
from shared.events import EVENT_TYPES
from shared.topics import ALL_TOPICS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _document() -> dict[str, Any]:
    loaded = yaml.safe_load((DOCS / "asyncapi.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _pointer(doc: dict[str, Any], ref: str) -> object:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_it_is_asyncapi_3_with_a_channel_per_topic() -> None:
    doc = _document()
    assert str(doc["asyncapi"]).startswith("3.")
    addresses = {channel["address"] for channel in doc["channels"].values()}
    assert addresses == set(ALL_TOPICS)


def test_every_ref_resolves() -> None:
    doc = _document()
    refs = list(_refs(doc))
    assert refs
    broken = []
    for ref in refs:
        try:
            if ref.startswith("#/"):
                _pointer(doc, ref)
            elif not (DOCS / ref).is_file():
                broken.append(ref)
        except (KeyError, TypeError):
            broken.append(ref)
    assert not broken, f"unresolved $ref in docs/asyncapi.yaml: {broken}"


def test_every_event_type_and_boundary_message_has_a_message() -> None:
    files = set(_refs(_document()))
    wanted = {f"schemas/{schemas.event_schema_file(t)}" for t in EVENT_TYPES}
    wanted |= {
        "schemas/kpi.scores.json",
        "schemas/kpi.deadletter.json",
        "schemas/events/event.json",
    }
    assert wanted <= files, f"no message for {sorted(wanted - files)}"
