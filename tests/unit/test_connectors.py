"""Pure helpdesk connectors: signature schemes, translators, event ids, agent resolution."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.connectors import TRANSLATORS, translate
from services.ingest.connectors.base import (
    RATING,
    Agent,
    Change,
    NotUnderstood,
    canonical,
    event_id,
    resolve,
    timestamp,
)
from services.ingest.connectors.signatures import (
    Unauthorized,
    chatwoot_signature,
    verify_chatwoot,
    verify_secret_header,
    verify_zammad,
    verify_zendesk,
    zammad_signature,
    zendesk_signature,
)
from services.ingest.connectors.zendesk_events import (
    ASSIGNED,
    COMMENT_ADDED,
    CREATED,
    STATUS_CHANGED,
)
from shared.events import validate_event_obj
from shared.settings import SettingsError, load_settings
from tests.webhook_payloads import (
    SECRETS,
    iso_minute,
    placeholders,
    render,
    sign,
    zendesk_comment,
    zendesk_detail,
    zendesk_event,
)
from tests.webhook_scenarios import AGENT_IDS, LI_NA, LI_NA_EMAIL, LIVES, SCENARIOS

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
BODY = b'{"event":"conversation_created","id":42}'
VENDORS = sorted(SCENARIOS)
# One ticket's life per way a helpdesk reports it (Zendesk: triggers and event subscriptions).
WAYS = sorted(LIVES)


# ----------------------------------------------------------------- signature schemes


def test_known_answers_match_openssl() -> None:
    """Computed independently with ``openssl dgst -hmac`` (see the commit that added them)."""
    assert zammad_signature(b"zm-token", BODY) == "sha1=30d07f2dbee581043c8b720bd8bab59ed4dd55c8"
    assert chatwoot_signature(b"cw-secret", "1767225600", BODY) == (
        "sha256=5febcbe0fbcb45233821a5cea6447cc0c10afffb0c2adf6e5452836a88049827"
    )
    assert zendesk_signature(b"zd-secret", "2026-01-01T00:00:00Z", BODY) == (
        "FMGfR305tUGhosVnv88bUjQNMaXK6HTWgcT+Lg3HyFI="
    )


def _verify(vendor: str, secret: str, body: bytes, headers: dict[str, str]) -> None:
    lowered = {k.lower(): v for k, v in headers.items()}
    keys = [secret.encode()]
    if vendor == "zammad":
        verify_zammad(keys, body, lowered)
    elif vendor == "zendesk":
        verify_zendesk(keys, body, lowered, NOW, 300)
    elif vendor == "chatwoot":
        verify_chatwoot(keys, body, lowered, NOW, 300)
    else:
        verify_secret_header(keys, lowered)


secrets_ = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)


@given(
    vendor=st.sampled_from(VENDORS),
    secret=secrets_,
    other=secrets_,
    body=st.binary(max_size=300),
    flip=st.integers(min_value=0),
)
def test_a_signature_verifies_only_its_own_body_and_secret(
    vendor: str, secret: str, other: str, body: bytes, flip: int
) -> None:
    headers = sign(vendor, body, NOW, secret=secret)
    _verify(vendor, secret, body, headers)
    if other != secret:
        with pytest.raises(Unauthorized):
            _verify(vendor, other, body, headers)
    if body and vendor != "freshdesk":  # Freshdesk signs nothing: its header is the secret
        tampered = bytearray(body)
        tampered[flip % len(body)] ^= 0x01
        with pytest.raises(Unauthorized):
            _verify(vendor, secret, bytes(tampered), headers)


@pytest.mark.parametrize("vendor", ["zendesk", "chatwoot"])
@given(skew=st.integers(min_value=-7200, max_value=7200))
def test_a_signed_timestamp_further_than_max_age_is_refused(vendor: str, skew: int) -> None:
    signed_at = NOW + dt.timedelta(seconds=skew)
    headers = {k.lower(): v for k, v in sign(vendor, BODY, signed_at).items()}
    keys = [SECRETS[vendor].encode()]
    check = verify_zendesk if vendor == "zendesk" else verify_chatwoot
    if abs(skew) <= 300:
        check(keys, BODY, headers, NOW, 300)
    else:
        with pytest.raises(Unauthorized, match="KPI_WEBHOOK_MAX_AGE"):
            check(keys, BODY, headers, NOW, 300)


def test_missing_headers_and_non_ascii_signatures_are_refused() -> None:
    with pytest.raises(Unauthorized, match="missing x-hub-signature"):
        verify_zammad([b"k"], BODY, {})
    with pytest.raises(Unauthorized):
        verify_zammad([b"k"], BODY, {"x-hub-signature": "sha1=é"})
    with pytest.raises(Unauthorized, match="missing x-chatwoot-timestamp"):
        verify_chatwoot([b"k"], BODY, {"x-chatwoot-signature": "sha256=00"}, NOW, 300)
    # A list of secrets (rotation): any one of them verifies.
    headers = {"x-hub-signature": zammad_signature(b"old", BODY)}
    verify_zammad([b"new", b"old"], BODY, headers)


# ----------------------------------------------------------------------- translators

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(vendor=st.sampled_from(VENDORS), payload=json_values)
def test_any_json_is_translated_or_not_understood_never_a_crash(vendor: str, payload: Any) -> None:
    try:
        translate(vendor, payload, NOW)
    except NotUnderstood as exc:
        assert exc.field and exc.reason


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))] or [path]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(v, (*path, i))] or [path]
    return [path]


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replace(copy[path[0]], path[1:], new)
    return copy


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(way=st.sampled_from(WAYS), data=st.data())
def test_a_vendor_payload_with_any_field_changed_never_crashes(way: str, data: Any) -> None:
    """Real shapes with one value replaced by anything: translated, or a 422 naming a field."""
    scenario = LIVES[way](NOW)
    vendor = scenario.vendor
    body = data.draw(st.sampled_from(scenario.bodies))
    payload = orjson.loads(body)
    path = data.draw(st.sampled_from(_leaves(payload)))
    mutated = _replace(payload, path, data.draw(json_values))
    try:
        result = translate(vendor, mutated, NOW)
    except NotUnderstood:
        return
    for change in result.changes:
        canonical(vendor, change, "s1")  # never raises either


@given(way=st.sampled_from(WAYS), hours=st.integers(min_value=-24 * 365, max_value=24 * 365))
def test_every_vendor_event_is_a_valid_canonical_event_with_a_stable_id(
    way: str, hours: int
) -> None:
    t0 = NOW + dt.timedelta(hours=hours)
    seen: dict[str, dict[str, object]] = {}
    scenario = LIVES[way](t0)
    vendor = scenario.vendor
    for body in scenario.bodies:
        for change in translate(vendor, orjson.loads(body), NOW).changes:
            found = resolve(change.agent, {})
            event = canonical(vendor, change, found.specialist_id)
            validate_event_obj(event)
            assert event["ticket_id"] == change.ticket_id
            assert str(event["ticket_id"]).startswith(f"{vendor}:")
            # A redelivery gives the same id, and the same id always the same content.
            again = translate(vendor, orjson.loads(body), NOW)
            assert event_id(vendor, change) in {event_id(vendor, c) for c in again.changes}
            assert seen.setdefault(str(event["event_id"]), event) == event


ids = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=12)


@given(a=st.lists(ids, max_size=3), b=st.lists(ids, max_size=3), ticket=ids)
def test_event_ids_differ_when_the_change_differs(a: list[str], b: list[str], ticket: str) -> None:
    first = Change("ticket.closed", ticket, NOW, tuple(a))
    second = Change("ticket.closed", ticket, NOW, tuple(b))
    assert (event_id("zammad", first) == event_id("zammad", second)) == (a == b)
    assert len(event_id("chatwoot", first)) <= 128


@given(
    agent_id=st.one_of(st.none(), ids),
    email=st.one_of(st.none(), st.emails()),
    by_id=st.booleans(),
    by_email=st.booleans(),
)
def test_an_agent_resolves_by_id_then_email_else_vendor_colon_id(
    agent_id: str | None, email: str | None, by_id: bool, by_email: bool
) -> None:
    agent = Agent("zendesk", agent_id, email)
    aliases: dict[tuple[str, str], str] = {}
    if by_id and agent_id:
        aliases[("zendesk", agent_id)] = "via-id"
    if by_email and email:
        aliases[("email", email.lower())] = "via-email"
    found = resolve(agent, aliases)
    if by_id and agent_id:
        assert found == resolve(agent, aliases) and found.specialist_id == "via-id"
    elif by_email and email:
        assert found.specialist_id == "via-email" and found.unmapped is None
    else:
        assert found.specialist_id == f"zendesk:{agent_id or (email or '').lower()}"
        assert found.unmapped == agent


@pytest.mark.parametrize(
    ("rendered", "score"),
    [("Good", 5), ("Bad", 1), ("good, I'm satisfied", 5), ("Bad, I'm unsatisfied", 1),
     ("4", 4), (3, 3), ("Offered", None), ("Unoffered", None), ("", None), (None, None)],
)  # fmt: skip
def test_ratings_as_helpdesks_word_them(rendered: object, score: int | None) -> None:
    assert RATING.parse(rendered, "rating") == score


@pytest.mark.parametrize("rendered", ["6", "0", "wow", "Gut", True, [5]])
def test_what_is_no_rating_is_not_understood(rendered: object) -> None:
    with pytest.raises(NotUnderstood):
        RATING.parse(rendered, "satisfaction.rating")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2013-12-12T05:35Z", dt.datetime(2013, 12, 12, 5, 35, tzinfo=dt.UTC)),
     ("2026-03-01T09:30:00.123Z", dt.datetime(2026, 3, 1, 9, 30, 0, 123000, tzinfo=dt.UTC)),
     (1767225600, NOW), (1767225600.0, NOW), ("1767225600", NOW)],
)  # fmt: skip
def test_vendor_times(value: object, expected: dt.datetime) -> None:
    assert timestamp(value, "t") == expected


@pytest.mark.parametrize("value", ["2026-03-01T09:30:00", "soon", True, -5, None, ""])
def test_bad_vendor_times_are_not_understood(value: object) -> None:
    with pytest.raises(NotUnderstood):
        timestamp(value, "ticket.updated_at")


def test_templates_use_only_the_vendors_documented_placeholders() -> None:
    assert placeholders("zendesk") == {
        "ticket.id", "ticket.created_at_with_timestamp", "ticket.updated_at_with_timestamp",
        "ticket.via", "ticket.assignee.id", "ticket.assignee.email", "current_user.id",
        "current_user.email", "satisfaction.current_rating",
    }  # fmt: skip
    assert placeholders("freshdesk") == {"ticket.id", "ticket.source", "ticket.agent.email"}
    assert set(TRANSLATORS) == set(VENDORS)


# ---------------------------------------------------- Zendesk event subscriptions

EVENT_TYPES = [CREATED, ASSIGNED, COMMENT_ADDED, STATUS_CHANGED]
STATUSES = ["NEW", "OPEN", "PENDING", "HOLD", "SOLVED", "CLOSED"]
ALIAS_MAP = {**{(v, i): LI_NA for v, i in AGENT_IDS.items()}, ("email", LI_NA_EMAIL): LI_NA}


def _canonical_events(vendor: str, bodies: list[bytes]) -> list[dict[str, Any]]:
    """What the bodies become on kpi.events, one per event id, as the scenarios write them."""
    found: dict[str, dict[str, Any]] = {}
    for body in bodies:
        for change in translate(vendor, orjson.loads(body), NOW).changes:
            event = canonical(vendor, change, resolve(change.agent, ALIAS_MAP).specialist_id)
            found.setdefault(str(event.pop("event_id")), event)
    for event in found.values():
        del event["source"]
        event["occurred_at"] = dt.datetime.fromisoformat(str(event["occurred_at"]))
    return sorted(found.values(), key=_sort_key)


def _sort_key(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True, default=str)


@pytest.mark.parametrize("way", [w for w in WAYS if w != "freshdesk"])  # Freshdesk: receipts
def test_a_tickets_life_translates_to_exactly_its_events(way: str) -> None:
    scenario = LIVES[way](NOW)
    expected = sorted(scenario.expected, key=_sort_key)
    assert _canonical_events(scenario.vendor, scenario.bodies) == expected


def _detail(status: str, hours: float, assignee: str | None = "3612") -> dict[str, Any]:
    return zendesk_detail("5158", status=status, created_at=NOW, assignee_id=assignee,
                          updated_at=NOW + dt.timedelta(hours=hours), actor_id="3612")  # fmt: skip


def _zendesk(body: bytes) -> tuple[list[Change], tuple[str, ...]]:
    result = translate("zendesk", orjson.loads(body), NOW)
    return list(result.changes), result.ignored


@given(before=st.sampled_from(STATUSES), after=st.sampled_from(STATUSES), lower=st.booleans())
def test_status_changes_count_as_the_solved_and_reopened_triggers_do(
    before: str, after: str, lower: bool
) -> None:
    """Reference: closed when it becomes solved, reopened when it leaves solved but not for
    closed (the triggers' conditions); any other move counts for nothing."""
    event = {"current": after.lower() if lower else after, "previous": before}
    at = NOW + dt.timedelta(hours=3)
    changes, ignored = _zendesk(
        zendesk_event("ticket.status_changed", _detail(after, 3), event, at)
    )
    if after == "SOLVED" and before != "SOLVED":
        assert [(c.type, c.resolved, c.agent and c.agent.id) for c in changes] == [
            ("ticket.closed", True, "3612")
        ]
    elif before == "SOLVED" and after not in ("SOLVED", "CLOSED"):
        assert [(c.type, c.agent) for c in changes] == [("ticket.reopened", None)]
    else:
        assert changes == [] and ignored == ("status_not_counted",)


@given(public=st.booleans(), staff=st.booleans(), hours=st.sampled_from([0, 0.001, 2]))
def test_only_a_public_staff_comment_after_the_tickets_creation_is_a_reply(
    public: bool, staff: bool, hours: float
) -> None:
    at = NOW + dt.timedelta(hours=hours)
    comment = zendesk_comment("9003", author_id="3612", name="Li Na", staff=staff, public=public)
    changes, ignored = _zendesk(zendesk_event("ticket.comment_added", _detail("OPEN", hours),
                                              comment, at))  # fmt: skip
    if not public:
        assert ignored == ("private_message",)
    elif not staff:
        assert ignored == ("customer_message",)
    elif iso_minute(at) == iso_minute(NOW):  # the comment the ticket was created with
        assert ignored == ("opening_comment",)
    else:
        (reply,) = changes
        assert reply.type == "ticket.first_response" and reply.agent == Agent(
            "zendesk", "3612", None, "Li Na"
        )
        assert reply.occurred_at == dt.datetime.fromisoformat(iso_minute(at))


@settings(max_examples=200)
@given(
    hours=st.floats(min_value=0.01, max_value=24 * 400, allow_nan=False),
    agent=st.integers(min_value=1, max_value=2**53),
)
def test_a_trigger_and_an_event_subscription_reporting_one_change_count_once(
    hours: float, agent: int
) -> None:
    """Same ticket, same update time, same assignee: the same event id and the same event."""
    at = NOW + dt.timedelta(hours=hours)
    user = str(agent)
    values = {"ticket.id": "5158", "ticket.created_at_with_timestamp": iso_minute(NOW),
              "ticket.updated_at_with_timestamp": iso_minute(at), "ticket.assignee.id": user,
              "current_user.id": user}  # fmt: skip
    detail = _detail("OPEN", hours, user)
    comment = zendesk_comment("9003", author_id=user, name="Li Na", staff=True, public=True)
    pairs = {
        "assignee_changed": ("ticket.agent_assignment_changed", {"current": agent}),
        "agent_replied": ("ticket.comment_added", comment),
        "solved": ("ticket.status_changed", {"current": "SOLVED", "previous": "OPEN"}),
        "reopened": ("ticket.status_changed", {"current": "OPEN", "previous": "SOLVED"}),
    }
    for kpi_event, (kind, event) in pairs.items():
        (trigger,) = _zendesk(render("zendesk", kpi_event, values))[0]
        (subscribed,) = _zendesk(zendesk_event(kind, detail, event, at))[0]
        assert event_id("zendesk", trigger) == event_id("zendesk", subscribed), kpi_event
        specialist = resolve(trigger.agent, {}).specialist_id
        assert canonical("zendesk", trigger, specialist) == canonical(
            "zendesk", subscribed, specialist
        ), kpi_event
    # Created counts once per ticket either way (the channel is worded differently).
    (trigger,) = _zendesk(render("zendesk", "ticket_created", values))[0]
    (subscribed,) = _zendesk(zendesk_event("ticket.created", detail, {}, at))[0]
    assert event_id("zendesk", trigger) == event_id("zendesk", subscribed)


def test_event_types_without_a_kpi_are_acknowledged_and_foreign_types_not_understood() -> None:
    for kind in ("ticket.priority_changed", "ticket.csat_received", "user.created"):
        assert _zendesk(zendesk_event(kind, _detail("OPEN", 1), {}, NOW)) == (
            [], ("event_not_used",)
        )  # fmt: skip
    with pytest.raises(NotUnderstood) as err:
        translate("zendesk", {"type": "conversation_created", "id": 1}, NOW)
    assert err.value.field == "type" and err.value.code == "unknown_type"
    unassigned = {"current": None, "previous": 3612}
    body = zendesk_event("ticket.agent_assignment_changed", _detail("OPEN", 1, None), unassigned,
                         NOW)  # fmt: skip
    assert _zendesk(body) == ([], ("no_agent",))
    with pytest.raises(NotUnderstood) as err:
        translate("zendesk", {"type": STATUS_CHANGED, "detail": {"id": "1"}, "event": {}}, NOW)
    assert err.value.field == "event.current" and err.value.code == "missing_field"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(EVENT_TYPES), detail=json_values, event=json_values, time=json_values)
def test_any_event_subscription_body_is_translated_or_not_understood(
    kind: str, detail: Any, event: Any, time: Any
) -> None:
    payload = {"type": kind, "detail": detail, "event": event, "time": time}
    try:
        result = translate("zendesk", payload, NOW)
    except NotUnderstood as exc:
        assert exc.field and exc.reason
        return
    for change in result.changes:
        validate_event_obj(canonical("zendesk", change, "s1"))


# -------------------------------------------------------------------------- settings


def test_webhook_secrets_setting() -> None:
    raw = {"zammad": "tok-zm", "zendesk": ["tok-new", "tok-old"]}
    loaded = load_settings(webhook_secrets=json.dumps(raw))
    assert {k: [s.get_secret_value() for s in v] for k, v in loaded.webhook_secrets.items()} == {
        "zammad": ["tok-zm"],
        "zendesk": ["tok-new", "tok-old"],
    }
    assert "tok-" not in repr(loaded)
    assert load_settings(webhook_secrets=" ").webhook_secrets == {}
    assert load_settings(webhook_max_age="2m").webhook_max_age == 120


@pytest.mark.parametrize(
    ("raw", "reason"),
    [('{"intercom": "x"}', "unknown vendor 'intercom'"),
     ('{"zammad": ""}', "non-empty"), ('{"zammad": []}', "non-empty"),
     ('{"zammad": 5}', "non-empty"), ("{oops", "must be a JSON object")],
)  # fmt: skip
def test_bad_webhook_secrets_name_the_variable(raw: str, reason: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(webhook_secrets=raw)
    assert "KPI_WEBHOOK_SECRETS" in str(err.value) and reason in str(err.value)
