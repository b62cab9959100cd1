"""Channel config validation, secret masking/merging, response classification, snapshots,
and the storable-text rules on every outside string."""

from __future__ import annotations

import datetime as dt
import smtplib
import ssl
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import ConsumerRecord
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.notify.consumer import decode
from services.notify.handlers.observations import (
    is_silenced,
    obs_from_dict,
    obs_to_dict,
    observations,
)
from services.notify.rules import SilenceScope
from services.notify.schemas import (
    MASK,
    AckIn,
    ChannelIn,
    SilenceIn,
    masked_config,
    merge_secrets,
    validate_config,
)
from services.notify.sender import classify_response
from services.notify.transport import describe_failure
from shared.kafka import Record
from shared.scores import ScoreSnapshot
from shared.text import INVALID_TEXT, PYDANTIC_UNICODE_ERROR, unicode_error_reason


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        validate_config("webhook", {"url": "ftp://x", "secret": "short"})
    fields = {e["loc"][0] for e in err.value.errors()}
    assert fields == {"url", "secret"}
    with pytest.raises(ValidationError):
        validate_config("email", {"sender": "a@b.c", "recipients": []})
    with pytest.raises(ValidationError):
        validate_config("slack", {"url": "https://h/x", "extra": 1})


@given(
    secret=st.text(min_size=8, max_size=40).filter(lambda s: s != MASK),
    token=st.text(alphabet="abcdefXYZ0123", min_size=4, max_size=20),
)
def test_masked_config_never_contains_secrets(secret: str, token: str) -> None:
    url = f"https://oapi.dingtalk.com/robot/send?access_token={token}"
    masked = masked_config({"url": url, "secret": secret})
    assert masked["secret"] == MASK and token not in masked["url"]
    # Sending the masked config back keeps the stored secrets.
    assert merge_secrets(masked, {"url": url, "secret": secret}) == {"url": url, "secret": secret}
    assert merge_secrets({"url": url}, {"url": "https://old/x", "secret": secret})["url"] == url


def test_classify_response() -> None:
    assert classify_response(200, b'{"errcode":0,"errmsg":"ok"}').ok
    assert classify_response(200, b"ok").ok
    rate_limited = classify_response(200, b'{"errcode":130101,"errmsg":"send too fast"}')
    assert not rate_limited.ok and not rate_limited.permanent
    assert rate_limited.error == "receiver error code 130101"
    assert classify_response(200, b'{"code":19021,"msg":"sign match fail"}').ok is False
    assert classify_response(404, b"").permanent
    assert not classify_response(429, b"").permanent
    assert not classify_response(503, b"").permanent
    assert classify_response(500, b"internal detail").error == "HTTP 500"


@given(
    status=st.integers(min_value=100, max_value=599),
    text=st.text(min_size=4, max_size=300),
    code=st.integers(min_value=1, max_value=10**9),
)
def test_stored_reason_is_never_response_text(status: int, text: str, code: int) -> None:
    # Supervisors read last_error: a target's answer (its body, or a robot's errmsg) must
    # never reach it, whatever the target sends.
    marker = "MARK" + text
    for body in (
        marker.encode(),
        orjson.dumps({"errcode": code, "errmsg": marker}),
        orjson.dumps({"code": code, "msg": marker}),
    ):
        error = classify_response(status, body).error
        assert error in (None, f"HTTP {status}", f"receiver error code {code}")


@given(text=st.text(min_size=1, max_size=200))
def test_failure_reason_is_fixed_text(text: str) -> None:
    # Exception texts carry the URL with its token or the server's reply (SMTP): the stored
    # reason is built from the exception's type and codes only.
    marker = f"https://h/robot?access_token=TOKEN {text} ZQXJ"
    failures: list[BaseException] = [
        httpx.ConnectError(marker),
        httpx.ReadTimeout(marker),
        httpx.RemoteProtocolError(marker),
        httpx.InvalidURL(marker),
        smtplib.SMTPResponseException(554, marker.encode()),
        smtplib.SMTPAuthenticationError(535, marker.encode()),
        smtplib.SMTPRecipientsRefused({"a@b": (550, marker.encode())}),
        smtplib.SMTPServerDisconnected(marker),
        ssl.SSLCertVerificationError(1, marker),
        OSError(111, marker),
        ValueError(marker),
        RuntimeError(marker),
    ]
    for exc in failures:
        reason, _ = describe_failure(exc)
        assert "TOKEN" not in reason and "ZQXJ" not in reason, (exc, reason)
    assert describe_failure(smtplib.SMTPResponseException(554, b"x"))[0] == "SMTP 554"
    assert describe_failure(httpx.ConnectTimeout(marker))[0] == "connect timeout"


def test_snapshot_to_observations_roundtrip() -> None:
    snap = ScoreSnapshot.model_validate(
        {
            "specialist_id": "a",
            "team_id": None,
            "window": {"name": "30d", "from": "2026-01-01", "to": "2026-01-30"},
            "computed_at": "2026-01-30T10:00:00Z",
            "kpis": {
                "avg_response_time_hours": {
                    "value": 30.0,
                    "numerator": 300.0,
                    "denominator": 10,
                    "grade": "unqualified",
                    "qualified": 24.0,
                    "excellent": 12.0,
                    "min_samples": 10,
                },
                "nps": {"value": 10.0, "grade": None},
            },
        }
    )
    obs = observations(snap)
    assert [o.kpi for o in obs] == ["avg_response_time_hours", "nps"]
    assert obs[0].higher_is_better is False and obs[0].samples == 10
    assert obs[0].observed_at == dt.datetime(2026, 1, 30, 10, tzinfo=dt.UTC)
    assert obs_from_dict(obs_to_dict(obs[0])) == obs[0]
    with pytest.raises(ValidationError):
        ScoreSnapshot.model_validate({**snap.model_dump(), "computed_at": "2026-01-30T10:00:00"})


def test_silence_matching() -> None:
    sil = [SilenceScope("a", None, "north"), SilenceScope(None, "nps", None)]
    assert is_silenced(sil, "a", "resolution_rate", "north")
    assert is_silenced(sil, "b", "nps", "south")  # an admin's KPI-wide silence: every team
    assert not is_silenced(sil, "b", "resolution_rate", "north")


@given(
    specialist=st.sampled_from(["a", "b"]),
    kpi=st.sampled_from(["nps", "csat"]),
    set_in=st.sampled_from(["north", "south", None]),
    now_in=st.sampled_from(["north", "south", None]),
    silence_kpi=st.sampled_from(["nps", None]),
)
def test_silence_mutes_only_the_team_it_was_set_in(
    specialist: str, kpi: str, set_in: str | None, now_in: str | None, silence_kpi: str | None
) -> None:
    # A specialist's silence belongs to the team they were in when it was set: once they
    # move, the old team's silence mutes nothing (and the new team's alerts go out).
    silence = SilenceScope("a", silence_kpi, set_in)
    expected = specialist == "a" and silence_kpi in (None, kpi) and set_in == now_in
    assert is_silenced([silence], specialist, kpi, now_in) is expected


# -- storable text (shared.text) on every outside string notify stores or echoes ----------

_UNTIL = "2030-01-01T00:00:00Z"
_URL = "https://h.example.com/hook"
_10KB = 10 * 1024
_NUL = "must not contain U+0000 (NUL)"
_SURROGATE = "must not contain an unpaired surrogate U+D800"

Check = Callable[[str], object]


def _snapshot(**fields: Any) -> dict[str, Any]:
    return {
        "specialist_id": "s-42",
        "team_id": "north",
        "window": {"name": "30d"},
        "computed_at": "2026-01-30T10:00:00Z",
        "kpis": {"nps": {"value": 10.0}},
        **fields,
    }


# (field, how a value reaches it, loc of its error, "id" or "text" rule, max length or None).
# Values are put where they would be stored; prefixes only satisfy minimum lengths.
FIELDS: list[tuple[str, Check, tuple[str | int, ...], str, int | None]] = [
    ("channel name", lambda v: ChannelIn(name=v, kind="slack", config={}), ("name",), "id", 200),
    (
        "channel team_id",
        lambda v: ChannelIn(name="n", kind="slack", team_id=v, config={}),
        ("team_id",),
        "id",
        128,
    ),
    (
        "email sender",
        lambda v: validate_config("email", {"sender": "kpi" + v, "recipients": ["a@b.c"]}),
        ("sender",),
        "id",
        None,
    ),
    (
        "email recipient",
        lambda v: validate_config("email", {"sender": "k@b.c", "recipients": ["a@b.c", v]}),
        ("recipients", 1),
        "id",
        None,
    ),
    (
        "email host",
        lambda v: validate_config("email", {"sender": "k@b.c", "recipients": ["a"], "host": v}),
        ("host",),
        "id",
        None,
    ),
    (
        "email username",
        lambda v: validate_config("email", {"sender": "k@b.c", "recipients": ["a"], "username": v}),
        ("username",),
        "id",
        None,
    ),
    (
        "email password",
        lambda v: validate_config("email", {"sender": "k@b.c", "recipients": ["a"], "password": v}),
        ("password",),
        "text",
        None,
    ),
    (
        "webhook secret",
        lambda v: validate_config("webhook", {"url": _URL, "secret": "secret-" + v}),
        ("secret",),
        "text",
        None,
    ),
    (
        "dingtalk secret",
        lambda v: validate_config("dingtalk", {"url": _URL, "secret": v}),
        ("secret",),
        "text",
        None,
    ),
    (
        "feishu secret",
        lambda v: validate_config("feishu", {"url": _URL, "secret": v}),
        ("secret",),
        "text",
        None,
    ),
    (
        "silence specialist_id",
        lambda v: SilenceIn.model_validate({"specialist_id": v, "until": _UNTIL}),
        ("specialist_id",),
        "id",
        128,
    ),
    (
        "silence kpi",
        lambda v: SilenceIn.model_validate({"kpi": v, "until": _UNTIL}),
        ("kpi",),
        "text",
        40,
    ),
    (
        "silence comment",
        lambda v: SilenceIn.model_validate({"kpi": "nps", "until": _UNTIL, "comment": v}),
        ("comment",),
        "text",
        500,
    ),
    ("ack comment", lambda v: AckIn(comment=v), ("comment",), "text", 500),
    (
        "snapshot specialist_id",
        lambda v: ScoreSnapshot.model_validate(_snapshot(specialist_id=v)),
        ("specialist_id",),
        "id",
        128,
    ),
    (
        "snapshot team_id",
        lambda v: ScoreSnapshot.model_validate(_snapshot(team_id=v)),
        ("team_id",),
        "id",
        128,
    ),
    (
        "snapshot window",
        lambda v: ScoreSnapshot.model_validate(_snapshot(window={"name": v})),
        ("window", "name"),
        "text",
        32,
    ),
]

_FIELD_IDS = [f[0] for f in FIELDS]

# (value, reason under the text rule, under the id rule); None = accepted as it is.
VALUES: list[tuple[str, str | None, str | None]] = [
    ("a\x00b", _NUL, _NUL),
    ("a\ud800", _SURROGATE, _SURROGATE),
    ("x@y.z\r\nBcc: evil@example.com", None, "must not contain the control character U+000D"),
    ("a\tb", None, "must not contain the control character U+0009"),
    ("\x1b[2Jops", None, "must not contain the control character U+001B"),
    ("ops\x85", None, "must not contain the control character U+0085"),
    ("北区支持组", None, None),
    ("👨\u200d👩\u200d👧 😀", None, None),
    ("\u202eevil\u2028\ufeff", None, None),
]  # fmt: skip


def _only_error(check: Check, value: str) -> dict[str, Any]:
    with pytest.raises(ValidationError) as info:
        check(value)
    (error,) = info.value.errors()
    return dict(error)


@pytest.mark.parametrize(("value", "as_text", "as_id"), VALUES)
@pytest.mark.parametrize(("field", "check", "loc", "rule", "limit"), FIELDS, ids=_FIELD_IDS)
def test_notify_inputs_follow_the_text_rules(
    field: str,
    check: Check,
    loc: tuple[str | int, ...],
    rule: str,
    limit: int | None,
    value: str,
    as_text: str | None,
    as_id: str | None,
) -> None:
    reason = as_id if rule == "id" else as_text
    if reason is None:
        check(value)
        return
    error = _only_error(check, value)
    assert error["loc"] == loc, field
    if error["type"] == PYDANTIC_UNICODE_ERROR:  # pydantic-core may refuse a surrogate itself
        assert unicode_error_reason(error["input"]) == reason
    else:
        assert (error["type"], error["msg"]) == (INVALID_TEXT, reason), field


@pytest.mark.parametrize("fill", ["x", "北", "😀"])
@pytest.mark.parametrize(("field", "check", "loc", "rule", "limit"), FIELDS, ids=_FIELD_IDS)
def test_10_kb_strings_are_refused_only_where_a_limit_exists(
    field: str,
    check: Check,
    loc: tuple[str | int, ...],
    rule: str,
    limit: int | None,
    fill: str,
) -> None:
    value = fill * _10KB
    if limit is None:
        check(value)
        return
    error = _only_error(check, value)
    assert (error["loc"], error["type"]) == (loc, "string_too_long"), field
    # A NUL past the limit: the length is judged first, as the value would be stored.
    error = _only_error(check, value + "\x00")
    assert (error["loc"], error["type"]) == (loc, "string_too_long"), field


def test_snapshot_kpi_keys_are_storable_text() -> None:
    kpis = {"nps": {"value": 1.0}, "a\x00": {"value": 1.0}}
    error = _only_error(lambda v: ScoreSnapshot.model_validate(_snapshot(kpis=kpis)), "")
    assert (error["loc"], error["type"], error["msg"]) == (
        ("kpis", "a\x00", "[key]"),
        INVALID_TEXT,
        _NUL,
    )
    custom = ScoreSnapshot.model_validate(_snapshot(kpis={"首次响应_hours": {"value": 1.0}}))
    assert list(custom.kpis) == ["首次响应_hours"]


def _record(value: bytes) -> Record:
    return ConsumerRecord("t.kpi.scores", 0, 7, 0, 0, b"s", value, None, 1, len(value), [])


@pytest.mark.parametrize(
    "raw",
    [
        orjson.dumps(_snapshot(specialist_id="s\x00")),
        orjson.dumps(_snapshot(team_id="north\n")),
        orjson.dumps(_snapshot(kpis={"nps\x00": {"value": 1.0}})),
        # A lone surrogate escape is not JSON to pydantic's parser: refused all the same.
        orjson.dumps(_snapshot()).replace(b'"s-42"', b'"s\\ud800"'),
    ],
)
def test_decode_refuses_unstorable_snapshots_so_the_consumer_dead_letters_them(
    raw: bytes,
) -> None:
    # ScoresConsumer.handle quarantines on ValueError (ValidationError is one) instead of
    # handing the message to PostgreSQL with the rest of the batch.
    with pytest.raises(ValueError):
        decode(_record(raw))
    assert decode(_record(orjson.dumps(_snapshot()))).specialist_id == "s-42"


def test_a_channel_url_with_a_nul_is_a_value_error_not_echoed() -> None:
    error = _only_error(
        lambda v: validate_config("wecom", {"url": v}), "https://h/robot\x00?key=TOKEN"
    )
    assert (error["loc"], error["type"]) == (("url",), "value_error")
    assert "control characters" in error["msg"] and "TOKEN" not in error["msg"]
