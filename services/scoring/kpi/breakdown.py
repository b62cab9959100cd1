"""Per-channel breakdown: which metrics are split by ticket channel, and channel normalisation."""

from __future__ import annotations

from datetime import date
from typing import Final, TypeAlias

from shared.catalogue import (
    AVG_RESPONSE_TIME_HOURS,
    CUSTOMER_SATISFACTION,
    FOLLOWUP_RATE,
    RESOLUTION_RATE,
)

# The measures of SPEC §3a, by their public key strings (the catalogue may not name them yet).
RESOLUTION_TIME_HOURS: Final = "resolution_time_hours"
FIRST_RESPONSE_SLA_RATE: Final = "first_response_sla_rate"
REOPEN_RATE: Final = "reopen_rate"

# The metrics broken down by channel, in the order responses list them. Only ticket-borne
# metrics: audits, peer reviews and training sessions have no ticket, hence no channel.
BROKEN_DOWN_METRICS: Final[tuple[str, ...]] = (
    CUSTOMER_SATISFACTION,
    RESOLUTION_RATE,
    AVG_RESPONSE_TIME_HOURS,
    FOLLOWUP_RATE,
    RESOLUTION_TIME_HOURS,
    FIRST_RESPONSE_SLA_RATE,
    REOPEN_RATE,
)
BROKEN_DOWN: Final[frozenset[str]] = frozenset(BROKEN_DOWN_METRICS)

# A ticket with no ``ticket.created`` naming a channel, and every survey without a ticket.
UNKNOWN_CHANNEL: Final = "unknown"
# Channels are kept as sent (after trimming), cut to this many characters: a label, not an
# id. Storage grows with contributions whatever the channel text (one row per specialist,
# day, metric and channel that has any), so the cap bounds row width; responses list the
# busiest channels and pool the rest (api), which bounds what a reader receives.
MAX_CHANNEL_CHARS: Final = 64

# (specialist_id, local date, metric, channel) -> (numerator, denominator)
ChannelKey: TypeAlias = tuple[str, date, str, str]


def normalise_channel(raw: str | None) -> str | None:
    """The channel a ``ticket.created`` names: trimmed, at most MAX_CHANNEL_CHARS; None if blank."""
    if raw is None:
        return None
    text = raw.strip()
    if not text:
        return None
    return text[:MAX_CHANNEL_CHARS]
