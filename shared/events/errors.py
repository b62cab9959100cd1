"""Why an input event was refused: stable error codes, FieldError and InvalidEvent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from shared.text import INVALID_TEXT

# Stable error codes: metrics labels and dead-letter reasons depend on them.
NOT_JSON: Final = "not_json"
NOT_OBJECT: Final = "not_object"
OVERSIZED: Final = "oversized"
UNKNOWN_TYPE: Final = "unknown_type"
MISSING_FIELD: Final = "missing_field"
WRONG_TYPE: Final = "wrong_type"
OUT_OF_RANGE: Final = "out_of_range"
NAIVE_TIMESTAMP: Final = "naive_timestamp"
INVALID_VALUE: Final = "invalid_value"
# INVALID_TEXT (shared.text): a string PostgreSQL, exports or logs cannot keep.
ERROR_CODES: Final[frozenset[str]] = frozenset(
    {
        NOT_JSON,
        NOT_OBJECT,
        OVERSIZED,
        UNKNOWN_TYPE,
        MISSING_FIELD,
        WRONG_TYPE,
        OUT_OF_RANGE,
        NAIVE_TIMESTAMP,
        INVALID_VALUE,
        INVALID_TEXT,
    }
)

WHOLE_MESSAGE: Final = "$"

_MAX_ECHO_CHARS: Final = 64


@dataclass(frozen=True)
class FieldError:
    """One reason an event was rejected; ``field`` is a dotted path or ``$``."""

    field: str
    reason: str
    code: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason} ({self.code})"


class InvalidEvent(ValueError):
    """An event failed validation; carries every problem found, first one first."""

    errors: tuple[FieldError, ...]

    def __init__(self, errors: tuple[FieldError, ...] | list[FieldError]) -> None:
        if not errors:
            raise ValueError("InvalidEvent needs at least one FieldError")
        self.errors = tuple(errors)
        super().__init__("; ".join(str(e) for e in self.errors))

    @classmethod
    def single(cls, code: str, reason: str, *, field: str = WHOLE_MESSAGE) -> InvalidEvent:
        """One problem; ``field`` defaults to the whole message."""
        return cls((FieldError(field=field, reason=reason, code=code),))

    @property
    def code(self) -> str:
        return self.errors[0].code

    def __str__(self) -> str:
        return "; ".join(str(e) for e in self.errors)

    # The default pickling re-calls __init__ with the message string; workers that
    # ship exceptions across processes need the structured errors back.
    def __reduce__(self) -> tuple[type[InvalidEvent], tuple[tuple[FieldError, ...]]]:
        return (type(self), (self.errors,))


def echo(value: object) -> str:
    # Reasons end up in logs and dead-letter headers: never echo unbounded input.
    text = repr(value)
    return text if len(text) <= _MAX_ECHO_CHARS else text[: _MAX_ECHO_CHARS - 3] + "..."


def json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
