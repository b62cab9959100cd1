"""Each helpdesk's own webhook authentication, checked in constant time (pure functions).

Sources followed (docs/connectors.md cites them in full):
- Zammad: ``lib/user_agent.rb`` (``set_signature``): ``X-Hub-Signature: sha1=<hex HMAC-SHA1 of
  the body>`` keyed with the webhook's signature token.
- Zendesk: developer.zendesk.com "Verifying webhook authenticity": base64 HMAC-SHA256 of
  ``X-Zendesk-Webhook-Signature-Timestamp`` + body, in ``X-Zendesk-Webhook-Signature``.
- Chatwoot (PR #13573, webhook API schema): ``X-Chatwoot-Signature: sha256=<hex HMAC-SHA256
  of "<X-Chatwoot-Timestamp>.<body>">``, the timestamp in Unix seconds.
- Freshdesk signs nothing: a custom header carrying the shared secret.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from typing import Final

ZAMMAD_SIGNATURE: Final = "x-hub-signature"
ZENDESK_SIGNATURE: Final = "x-zendesk-webhook-signature"
ZENDESK_TIMESTAMP: Final = "x-zendesk-webhook-signature-timestamp"
CHATWOOT_SIGNATURE: Final = "x-chatwoot-signature"
CHATWOOT_TIMESTAMP: Final = "x-chatwoot-timestamp"
# Freshdesk's "Trigger webhook" action lets the admin add custom headers; this one carries
# the secret of KPI_WEBHOOK_SECRETS["freshdesk"].
SECRET_HEADER: Final = "x-kpi-webhook-secret"


class Unauthorized(Exception):
    """The request is not the vendor's: 401 with this reason (it never echoes a secret)."""


def _same(expected: str, given: str) -> bool:
    try:
        return hmac.compare_digest(expected.encode("ascii"), given.strip().encode("ascii"))
    except UnicodeEncodeError:
        return False  # a header with non-ASCII text cannot be any of our digests


def _header(headers: Mapping[str, str], name: str, hint: str) -> str:
    value = headers.get(name)
    if not value or not value.strip():
        raise Unauthorized(f"missing {name} header ({hint})")
    return value


def _fresh(moment: dt.datetime, now: dt.datetime, max_age: float, name: str) -> None:
    skew = abs((now - moment).total_seconds())
    if skew > max_age:
        raise Unauthorized(
            f"{name} is {skew:.0f} s away from now, more than KPI_WEBHOOK_MAX_AGE "
            f"({max_age:.0f} s): a replayed or delayed request"
        )


def _unix_or_iso(value: str, name: str) -> dt.datetime:
    text = value.strip()
    try:
        if text.isdigit():
            return dt.datetime.fromtimestamp(int(text), dt.UTC)
        moment = dt.datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        raise Unauthorized(f"{name} is not a time") from None
    if moment.tzinfo is None:
        raise Unauthorized(f"{name} has no UTC offset")
    return moment


def zammad_signature(secret: bytes, body: bytes) -> str:
    return "sha1=" + hmac.new(secret, body, hashlib.sha1).hexdigest()


def zendesk_signature(secret: bytes, stamp: str, body: bytes) -> str:
    digest = hmac.new(secret, stamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def chatwoot_signature(secret: bytes, stamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_zammad(secrets: Sequence[bytes], body: bytes, headers: Mapping[str, str]) -> None:
    given = _header(headers, ZAMMAD_SIGNATURE, "set a signature token on the Zammad webhook")
    if not any(_same(zammad_signature(s, body), given) for s in secrets):
        raise Unauthorized("X-Hub-Signature does not match the body and the zammad secret")


def _verify_stamped(
    vendor: str,
    signer: Callable[[bytes, str, bytes], str],
    names: tuple[str, str],
    request: tuple[Sequence[bytes], bytes, Mapping[str, str]],
    now: dt.datetime,
    max_age: float,
) -> None:
    """A signature over a timestamp and the body (``names``: signature, timestamp headers)."""
    secrets, body, headers = request
    given = _header(headers, names[0], f"{vendor} signs every webhook request")
    stamp = _header(headers, names[1], f"{vendor} sends it with the signature")
    if not any(_same(signer(s, stamp, body), given) for s in secrets):
        raise Unauthorized(
            f"{names[0]} does not match the timestamp, the body and the {vendor} secret"
        )
    # Checked after the signature: only a request signed with our secret learns about time.
    _fresh(_unix_or_iso(stamp, names[1]), now, max_age, names[1])


def verify_zendesk(
    secrets: Sequence[bytes],
    body: bytes,
    headers: Mapping[str, str],
    now: dt.datetime,
    max_age: float,
) -> None:
    names = (ZENDESK_SIGNATURE, ZENDESK_TIMESTAMP)
    _verify_stamped("zendesk", zendesk_signature, names, (secrets, body, headers), now, max_age)


def verify_chatwoot(
    secrets: Sequence[bytes],
    body: bytes,
    headers: Mapping[str, str],
    now: dt.datetime,
    max_age: float,
) -> None:
    names = (CHATWOOT_SIGNATURE, CHATWOOT_TIMESTAMP)
    _verify_stamped("chatwoot", chatwoot_signature, names, (secrets, body, headers), now, max_age)


def verify_secret_header(secrets: Sequence[bytes], headers: Mapping[str, str]) -> None:
    given = _header(headers, SECRET_HEADER, "add it as a custom header of the Freshdesk webhook")
    if not any(hmac.compare_digest(s, given.strip().encode()) for s in secrets):
        raise Unauthorized("X-KPI-Webhook-Secret is not the freshdesk secret")
