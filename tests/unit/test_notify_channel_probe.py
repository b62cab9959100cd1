"""A channel test ("send test") as every channel kind builds it: marked as a test, escaped."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from services.notify.channels import (
    Channel,
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    OutgoingRequest,
    SlackChannel,
    WebhookChannel,
    WeComChannel,
    build_probe_delivery,
    make_probe_payload,
)
from shared.webhooks import ChannelTestPayload, verify_webhook_signature

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
# A name an admin may give: markup of every format the builders write, and a line break.
NAME = "ops *bold* <b>x</b> [l](http://e) <!here>\nsecond"


def _probe(lang: str) -> ChannelTestPayload:
    return make_probe_payload(
        test_id="t-1", channel_id="c-1", channel_name=NAME, requested_by="ann", now=T0, lang=lang
    )


CHANNELS: list[Channel] = [
    WebhookChannel(id="c-1", url="https://h.example/hook", secret="s3cret-key"),
    DingTalkChannel(
        id="c-1", url="https://oapi.dingtalk.com/robot/send?access_token=T", secret="S"
    ),
    WeComChannel(id="c-1", url="https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K"),
    FeishuChannel(id="c-1", url="https://open.feishu.cn/open-apis/bot/v2/hook/H", secret="S"),
    SlackChannel(id="c-1", url="https://hooks.slack.com/services/A/B/C"),
    EmailChannel(id="c-1", sender="kpi@example.com", recipients=("lead@example.com",)),
]


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
@pytest.mark.parametrize("channel", CHANNELS, ids=lambda c: c.kind)
def test_every_kind_sends_the_test_marked_as_one(channel: Channel, lang: str) -> None:
    probe = _probe(lang)
    tag = "[TEST]" if lang == "en" else "[测试]"
    out = build_probe_delivery(
        channel, probe, lang=lang, link="https://kpi.example/ui/", now=T0, delivery_key="test-t-1"
    )
    if isinstance(out, EmailMessage):
        assert str(out["Subject"]).startswith(tag) and "\n" not in str(out["Subject"])
        assert out["X-KPI-Delivery"] == "test-t-1"
        html = out.get_body(("html",))
        assert html is not None and "<b>x</b>" not in html.get_content()
        return
    assert isinstance(out, OutgoingRequest)
    assert out.headers["X-KPI-Delivery"] == "test-t-1"
    body = json.loads(out.body)
    if isinstance(channel, WebhookChannel):
        assert body == probe.to_json_dict() | {"sent_at": "2026-01-05T09:00:00Z"}
        assert body["type"] == "channel_test" and body["message"].startswith(tag)
        assert verify_webhook_signature(channel.secret, out.body, out.headers["X-KPI-Signature"])
        return
    # The robot's own format (escaping as for alerts: the same card renderer), marked.
    text = json.dumps(body, ensure_ascii=False).replace("\\\\", "")  # markdown's \[ is [
    assert tag in text and "t-1" in text, text


def test_the_plain_message_says_what_it_is_and_who_asked() -> None:
    message = _probe("en").message
    title = "[TEST] Alert channel test · ops *bold* <b>x</b> [l](http://e) <!here> second"
    assert message.splitlines()[0] == title  # one line, whatever the name holds
    assert "No action needed" in message and "ann" in message and "t-1" in message
    assert "2026-01-05 09:00 UTC" in message
    assert "无需处理" in _probe("zh-CN").message
