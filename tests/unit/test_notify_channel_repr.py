"""Exact repr/str of the notification channel configs: secrets and URL tokens masked."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notify import channels as ch

_CASES: list[tuple[object, str]] = [
    (
        ch.WebhookChannel("w", "https://h.example/hook?t=1", "s"),
        "WebhookChannel(id='w', url='https://h.example/***', secret='***')",
    ),
    (
        ch.DingTalkChannel("d", "https://oapi.dingtalk.com/robot/send?access_token=x"),
        "DingTalkChannel(id='d', url='https://oapi.dingtalk.com/***', secret=None)",
    ),
    (
        ch.DingTalkChannel("d", "https://x:8443/a", "k"),
        "DingTalkChannel(id='d', url='https://x:8443/***', secret='***')",
    ),
    (ch.WeComChannel("c", "https://q/x"), "WeComChannel(id='c', url='https://q/***')"),
    (
        ch.FeishuChannel("f", "https://f/x", None, False),
        "FeishuChannel(id='f', url='https://f/***', secret=None, card=False)",
    ),
    (
        ch.FeishuChannel("f", "https://f/x", "s"),
        "FeishuChannel(id='f', url='https://f/***', secret='***', card=True)",
    ),
    (
        ch.SlackChannel("s", "https://hooks.slack.com/services/T/B/X"),
        "SlackChannel(id='s', url='https://hooks.slack.com/***')",
    ),
    (
        ch.EmailChannel("e", "a@b", ("x@y",), "smtp", 587, "u", "pw", True),
        "EmailChannel(id='e', sender='a@b', recipients=('x@y',), host='smtp', port=587, "
        "username='u', password='***', starttls=True)",
    ),
    (
        ch.EmailChannel("e", "a@b", ()),
        "EmailChannel(id='e', sender='a@b', recipients=(), host='localhost', port=25, "
        "username=None, password=None, starttls=False)",
    ),
]


@pytest.mark.parametrize(("channel", "expected"), _CASES)
def test_repr_and_str_are_exact(channel: object, expected: str) -> None:
    assert repr(channel) == expected
    assert str(channel) == expected
    assert f"{channel}" == expected
    assert repr([channel]) == f"[{expected}]"


def _secret(value: str | None) -> str:
    return "None" if value is None else "'***'"


@given(
    ident=st.text(max_size=20),
    url=st.text(max_size=60)
    | st.from_regex(r"https?://[a-z.]{1,20}(:[0-9a-z]{1,7})?/[ -~]{0,30}", fullmatch=True),
    secret=st.none() | st.text(max_size=20),
    card=st.booleans(),
)
def test_http_channel_repr_matches_reference(
    ident: str, url: str, secret: str | None, card: bool
) -> None:
    # Reference: the hand-written reprs the channels had before sharing one implementation.
    # mask_url never raises (a bad port included), so neither does any channel repr.
    masked = ch.mask_url(url)
    assert repr(ch.WebhookChannel(ident, url, secret or "")) == (
        f"WebhookChannel(id={ident!r}, url={masked!r}, secret='***')"
    )
    assert repr(ch.DingTalkChannel(ident, url, secret)) == (
        f"DingTalkChannel(id={ident!r}, url={masked!r}, secret={_secret(secret)})"
    )
    assert repr(ch.WeComChannel(ident, url)) == f"WeComChannel(id={ident!r}, url={masked!r})"
    assert repr(ch.FeishuChannel(ident, url, secret, card)) == (
        f"FeishuChannel(id={ident!r}, url={masked!r}, secret={_secret(secret)}, card={card!r})"
    )
    assert repr(ch.SlackChannel(ident, url)) == f"SlackChannel(id={ident!r}, url={masked!r})"


@given(
    username=st.none() | st.text(max_size=10),
    password=st.none() | st.text(max_size=10),
    port=st.integers(1, 65535),
    recipients=st.lists(st.emails(), max_size=3).map(tuple),
)
def test_email_channel_repr_matches_reference(
    username: str | None, password: str | None, port: int, recipients: tuple[str, ...]
) -> None:
    channel = ch.EmailChannel(
        "e", "kpi@example.com", recipients, "smtp.example", port, username, password
    )
    assert str(channel) == (
        f"EmailChannel(id='e', sender='kpi@example.com', recipients={recipients!r}, "
        f"host='smtp.example', port={port!r}, username={username!r}, "
        f"password={_secret(password)}, starttls=False)"
    )
