"""Unit tests for shared.text: the storable-text rules, their pydantic types and scrub."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from shared.text import (
    INVALID_TEXT,
    StorableId,
    StorableText,
    id_problem,
    scrub,
    text_problem,
    unicode_error_reason,
)


class _Directory(BaseModel):
    id: StorableId
    notes: StorableText = ""


_SURROGATE = "must not contain an unpaired surrogate U+D800"

# value, text_problem, id_problem (None = allowed)
TABLE: list[tuple[str, str | None, str | None]] = [
    ("", None, None),
    ("s-42", None, None),
    ("李伟 😀", None, None),
    ("a\u2028\u202e\ufeff\u200d\ue000\U0010ffff", None, None),
    ("a\x00", "must not contain U+0000 (NUL)", "must not contain U+0000 (NUL)"),
    ("\ud800", _SURROGATE, _SURROGATE),
    ("line\nbreak", None, "must not contain the control character U+000A"),
    ("\x7f", None, "must not contain the control character U+007F"),
    ("\x9f", None, "must not contain the control character U+009F"),
    ("\ufffe\uffff", None, None),
    # The first offending character is the one named.
    ("a\tb\x00", "must not contain U+0000 (NUL)", "must not contain the control character U+0009"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "as_text", "as_id"), TABLE)
def test_rules(value: str, as_text: str | None, as_id: str | None) -> None:
    assert text_problem(value) == as_text
    assert id_problem(value) == as_id


@pytest.mark.parametrize(("value", "as_text", "as_id"), TABLE)
def test_pydantic_types_raise_invalid_text_with_the_reason(
    value: str, as_text: str | None, as_id: str | None
) -> None:
    cases = [({"id": value}, as_id, "id"), ({"id": "x", "notes": value}, as_text, "notes")]
    for data, reason, field in cases:
        if reason is None:
            _Directory(**data)
            continue
        with pytest.raises(ValidationError) as info:
            _Directory(**data)
        (err,) = info.value.errors()
        assert err["loc"] == (field,)
        if err["type"] == "string_unicode":  # pydantic-core refuses surrogates itself
            assert unicode_error_reason(err["input"]) == reason
        else:
            assert (err["type"], err["msg"]) == (INVALID_TEXT, reason)


@pytest.mark.parametrize(
    ("value", "scrubbed"),
    [("ok", "ok"), ("a\x00b", "a\ufffdb"), ("\ud800\udfff", "\ufffd\ufffd"), ("a\tb", "a\tb")],
)
def test_scrub(value: str, scrubbed: str) -> None:
    assert scrub(value) == scrubbed


def test_unicode_error_reason_for_non_text() -> None:
    assert unicode_error_reason(b"\xff") == "must be valid Unicode text"


@settings(max_examples=300)
@given(st.text(st.characters(codec=None, categories=None), max_size=30))
def test_scrubbed_text_is_storable_and_utf8(value: str) -> None:
    out = scrub(value)
    assert text_problem(out) is None
    assert out.encode("utf-8").decode("utf-8") == out  # no surrogate left
    assert len(out) == len(value)
