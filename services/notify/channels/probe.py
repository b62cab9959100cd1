"""A channel test ("send test"): its payload and text, rendered like every other notice."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from services.notify.channels.content import Content
from services.notify.messages import Fmt, Lang, format_time, normalize_lang, render_card
from shared.webhooks import ChannelTestPayload

# The title says TEST first, so nobody on the receiving end mistakes it for an alert.
_LABELS: Final[dict[Lang, dict[str, str]]] = {
    "zh-CN": {
        "title": "[测试] 告警渠道测试 · {name}",
        "what": "这是一条测试消息：管理员正在确认此渠道能否送达告警。无需处理。",
        "note": "说明",
        "channel": "渠道",
        "by": "发起人",
        "sent": "发送时间",
        "test": "测试编号",
    },
    "en": {
        "title": "[TEST] Alert channel test · {name}",
        "what": "This is a test message: an admin is checking that this channel delivers "
        "alerts. No action needed.",
        "note": "Note",
        "channel": "Channel",
        "by": "Requested by",
        "sent": "Sent",
        "test": "Test id",
    },
}


def make_probe_payload(
    *,
    test_id: str,
    channel_id: str,
    channel_name: str,
    requested_by: str,
    now: datetime,
    lang: str,
) -> ChannelTestPayload:
    """The generic webhook body of a channel test; `message` is its plain text."""
    payload = ChannelTestPayload(
        test_id=test_id,
        channel_id=channel_id,
        channel_name=channel_name,
        requested_by=requested_by,
        sent_at=now,
        message="",
    )
    return payload.model_copy(update={"message": render_probe_text(payload, lang, None)})


def render_probe_title(probe: ChannelTestPayload, lang: str) -> str:
    name = " ".join(probe.channel_name.split())  # one line, whatever the name holds
    return _LABELS[normalize_lang(lang)]["title"].format(name=name)


def render_probe_text(
    probe: ChannelTestPayload, lang: str, link: str | None, fmt: Fmt = "plain"
) -> str:
    """Full text of a channel test; the channel name and requester are escaped for `fmt`."""
    lg = normalize_lang(lang)
    lab = _LABELS[lg]
    rows = [
        (lab["note"], lab["what"]),
        (lab["channel"], probe.channel_name),
        (lab["by"], probe.requested_by),
        (lab["sent"], format_time(probe.sent_at)),
        (lab["test"], probe.test_id),
    ]
    return render_card(render_probe_title(probe, lg), rows, link, lg, fmt)


def probe_content(probe: ChannelTestPayload, lang: str) -> Content:
    return Content(
        title=render_probe_title(probe, lang),
        text=lambda fmt, link: render_probe_text(probe, lang, link, fmt),
        body=probe.to_json,
        template="blue",
    )
