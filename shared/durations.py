"""Durations in settings: ``90``, ``90s``, ``15m``, ``24h`` or ``7d`` as seconds (no I/O)."""

from __future__ import annotations

import re
from typing import Final

_DURATION_RE: Final = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d)?\s*$")
_DURATION_UNITS: Final = {None: 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``24h`` or ``7d`` (a number alone is seconds)."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 90s, 15m, 24h or 7d")
    if isinstance(value, int | float):
        return float(value)
    m = _DURATION_RE.match(str(value))
    if m is None:
        raise ValueError(f"'{value}' is not a duration such as 90s, 15m, 24h or 7d")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
