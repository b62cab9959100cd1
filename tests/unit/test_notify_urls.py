"""Channel URLs: strict validation on input, and masking that never raises on stored ones."""

from __future__ import annotations

import datetime as dt
import re

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.notify import channels as ch
from services.notify.api.channels import _channel_out
from services.notify.repository import ChannelRecord
from services.notify.schemas import (
    MASK,
    build_channel,
    masked_config,
    merge_secrets,
    validate_config,
)
from services.notify.transport import describe_failure

# Tokens are upper case; generated hosts are lower case, so a token in the output is a leak.
TOKEN = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ23456789", min_size=6, max_size=16)
LABEL = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
HOST = (
    st.lists(LABEL, min_size=1, max_size=4).map(".".join)
    | st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
    | st.sampled_from(["[::1]", "[2001:db8::1]", "[fe80::a:b]"])
)

# (text after the colon or None, shown port: int, None for no port, MASK for a bad one)
PortCase = tuple[str | None, int | str | None]
PORT: st.SearchStrategy[PortCase] = st.one_of(
    st.just((None, None)),
    st.integers(1, 65535).map(lambda p: (str(p), p)),
    st.integers(65536, 10**9).map(lambda p: (str(p), MASK)),
    st.text(alphabet="abcxyz-+ ", min_size=1, max_size=6).map(lambda t: (t, MASK)),
)


@st.composite
def url_parts(draw: st.DrawFn) -> tuple[str, str, str, PortCase, str, str, str]:
    scheme = draw(st.sampled_from(["http", "https"]))
    userinfo = draw(st.sampled_from(["", "user:{}@", "{}@"])).format(draw(TOKEN))
    host = draw(HOST)
    port = draw(PORT)
    path = draw(st.sampled_from(["", "/", "/robot/{}", "/{}/x"])).format(draw(TOKEN))
    query = draw(st.sampled_from(["", "?access_token={}", "?a=1&k={}"])).format(draw(TOKEN))
    fragment = draw(st.sampled_from(["", "#{}"])).format(draw(TOKEN))
    return scheme, userinfo, host, port, path, query, fragment


def _join(parts: tuple[str, str, str, PortCase, str, str, str]) -> str:
    scheme, userinfo, host, (port_text, _), path, query, fragment = parts
    port = "" if port_text is None else f":{port_text}"
    return f"{scheme}://{userinfo}{host}{port}{path}{query}{fragment}"


def _reference_mask(parts: tuple[str, str, str, PortCase, str, str, str]) -> str:
    scheme, _, host, (_, shown), path, query, fragment = parts
    port = "" if shown is None else f":{shown}"
    tail = f"/{MASK}" if (path not in ("", "/") or query or fragment) else ""
    return f"{scheme}://{host}{port}{tail}"


@given(url_parts())
def test_mask_url_matches_reference_and_hides_tokens(
    parts: tuple[str, str, str, PortCase, str, str, str],
) -> None:
    url = _join(parts)
    masked = ch.mask_url(url)
    assert masked == _reference_mask(parts)
    assert not re.search(r"[A-Z]", masked.removeprefix("http")), masked


_URLISH = st.from_regex(
    r"(https?|ftp|[a-z]{1,5})?:?/{0,3}[^/?#]{0,20}(:[^/?#]{0,8})?(/[^?#]{0,10})?(\?.{0,10})?",
    fullmatch=True,
)


@given(st.text(max_size=80) | _URLISH)
@example("https://h:99999/x")
@example("https://h:abc/x")
@example("http://[::1")
@example("http://[::1]:99999/")
@example("http://\uff03/x")
@example("https://h: 80/x")
@example("")
def test_mask_url_never_raises_and_hides_path_and_query(url: str) -> None:
    masked = ch.mask_url(url)
    assert isinstance(masked, str)
    if masked != MASK:
        # scheme://host[:port|:***][/***]; nothing after the authority but the mask.
        scheme, sep, rest = masked.partition("://")
        assert sep and scheme and "?" not in rest and "#" not in rest
        authority, slash, tail = rest.partition("/")
        assert authority and (not slash or tail == MASK)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://h/x", "must be an http:// or https:// URL"),
        ("https://h:99999/x", "port must be a number from 1 to 65535"),
        ("https://h:abc/x", "port must be a number from 1 to 65535"),
        ("https://h:0/x", "port must be a number from 1 to 65535"),
        ("https://h:/x", "port must be a number from 1 to 65535"),
        ("https://", "must include a host"),
        ("https://:8080/x", "must include a host"),
        ("https://user@/x", "must include a host"),
        ("https://h x/y", "must not contain spaces or control characters"),
        ("https://h/robot send", "must not contain spaces or control characters"),
        ("https://h/x\n", "must not contain spaces or control characters"),
        ("https://h/\tx", "must not contain spaces or control characters"),
        ("http://[::1", "is not a valid URL (malformed host)"),
        ("https://a..b/x", "host is not a valid domain name or IP address"),
        ("https://h!x/y", "host is not a valid domain name or IP address"),
        ("https://999.1.1.1/x", "host is not a valid domain name or IP address"),
        ("https://\uff41.com/x", "host is not a valid domain name or IP address"),
        ("https://h/" + "x" * 2048, "must be at most 2048 characters"),
    ],
)
def test_bad_url_is_rejected_naming_field_and_reason(url: str, reason: str) -> None:
    for kind, extra in (("webhook", {"secret": "s" * 8}), ("slack", {}), ("feishu", {})):
        with pytest.raises(ValidationError) as err:
            validate_config(kind, {"url": url, **extra})
        errors = err.value.errors(include_input=False, include_url=False)
        assert [(e["loc"], e["type"]) for e in errors] == [(("url",), "value_error")]
        assert errors[0]["msg"] == f"Value error, {reason}"


@pytest.mark.parametrize(
    "url",
    [
        "https://oapi.dingtalk.com/robot/send?access_token=abc",
        "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k",
        "http://127.0.0.1:8080/hook",
        "http://[::1]:9000/",
        "https://hooks.slack.com/services/T/B/X",
        "https://user:pw@h.example/x#frag",
        "https://bücher.de/hook",
        "http://intra_net.local/x",
    ],
)
def test_good_urls_are_accepted_unchanged(url: str) -> None:
    assert validate_config("slack", {"url": url}) == {"url": url}


@given(url_parts())
def test_accepted_urls_are_sendable_and_maskable(
    parts: tuple[str, str, str, PortCase, str, str, str],
) -> None:
    url = _join(parts)
    try:
        validate_config("wecom", {"url": url})
    except ValidationError:
        # The only generated defects are bad ports and bad IPv4 octets.
        assert parts[3][1] == MASK or re.fullmatch(r"[0-9.]+", parts[2])
        return
    assert parts[3][1] != MASK
    httpx.URL(url)  # what the sender does with it; raises on a URL it cannot send
    assert ch.mask_url(url) == _reference_mask(parts)


_NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
BAD_STORED = [
    "https://h:99999/robot?access_token=TOKEN1",
    "https://h:abc/x?key=TOKEN1",
    "http://[::1/TOKEN1",
    "https://:80/TOKEN1",
    "not a url TOKEN1",
]


@pytest.mark.parametrize("url", BAD_STORED)
@pytest.mark.parametrize("kind", ["webhook", "dingtalk", "wecom", "feishu", "slack"])
def test_stored_bad_url_still_lists_reprs_and_redacts(url: str, kind: str) -> None:
    # Rows written before validation was strict: everything that shows them must not raise.
    config = {"url": url, "secret": "SECRET-VALUE-1"} if kind in ("webhook", "dingtalk") else {}
    config.setdefault("url", url)
    record = ChannelRecord("c1", "legacy", kind, None, None, True, config, _NOW, _NOW)
    out = _channel_out(record)
    assert "TOKEN1" not in out.model_dump_json() and "SECRET-VALUE" not in out.model_dump_json()
    channel = build_channel("c1", kind, config)
    for text in (repr(channel), str(channel), repr([channel])):
        assert "TOKEN1" not in text and "SECRET-VALUE" not in text
    request = ch.OutgoingRequest("POST", url, {}, b"{}")
    assert "TOKEN1" not in repr(request)
    reason, _ = describe_failure(httpx.InvalidURL(f"{url} with {config.get('secret')}"))
    assert "TOKEN1" not in reason and "SECRET-VALUE" not in reason
    # Sending the masked config back keeps the stored URL, which then fails validation.
    merged = merge_secrets(masked_config(config), config)
    assert merged["url"] == url
    with pytest.raises(ValidationError) as err:
        validate_config(kind, merged)
    assert [e["loc"] for e in err.value.errors()] == [("url",)]
