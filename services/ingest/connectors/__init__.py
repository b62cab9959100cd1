"""Native helpdesk connectors: vendor webhook payloads to canonical events (pure domain).

``translate(vendor, payload, received_at)`` gives the canonical changes; ``canonical`` and
``resolve`` (base.py) make them SPEC §2 events with specialists. No HTTP, SQL or Kafka here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, Final

from services.ingest.connectors import chatwoot, zammad, zendesk_events
from services.ingest.connectors.base import Translation
from services.ingest.connectors.templates import REDELIVERY_WINDOW, freshdesk_receipt_key
from services.ingest.connectors.templates import TRANSLATORS as TEMPLATE_TRANSLATORS
from shared.settings import WEBHOOK_VENDORS

Translator = Callable[[Mapping[str, Any], dt.datetime], Translation]

TRANSLATORS: Final[dict[str, Translator]] = {
    **TEMPLATE_TRANSLATORS,
    "zendesk": zendesk_events.translate,  # trigger bodies and event subscriptions
    "zammad": zammad.translate,
    "chatwoot": chatwoot.translate,
}
assert set(TRANSLATORS) == set(WEBHOOK_VENDORS)

# Vendors whose bodies carry no time of their own: the adapter remembers when it first
# received each (ticket, family) body and translates with that time (see templates.py).
RECEIPT_KEYS: Final[dict[str, Callable[[Mapping[str, Any]], tuple[str, str]]]] = {
    "freshdesk": freshdesk_receipt_key
}
__all__ = ["RECEIPT_KEYS", "REDELIVERY_WINDOW", "TRANSLATORS", "translate"]


def translate(vendor: str, payload: Mapping[str, Any], received_at: dt.datetime) -> Translation:
    """The canonical changes of one vendor payload; raises ``NotUnderstood``."""
    return TRANSLATORS[vendor](payload, received_at)
