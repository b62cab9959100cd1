"""Golden payloads, signatures, texts and secret hygiene of the notify channels."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from typing import Any

import pytest

from services.notify.channels import (
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    HttpChannel,
    OutgoingRequest,
    SlackChannel,
    WebhookChannel,
    WeComChannel,
    build_dingtalk,
    build_email,
    build_feishu,
    build_request,
    build_slack,
    build_webhook,
    build_wecom,
    make_payload,
    mask_url,
)
from services.notify.messages import (
    format_line,
    format_value,
    kpi_name,
    normalize_lang,
    render_group_text,
    render_group_title,
    render_text,
    render_title,
)
from services.notify.rules import NotifyKind, Observation, RuleConfig, alert_id, decide
from shared.webhooks import AlertPayload, verify_webhook_signature

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
TS_MS = 1767603600000  # T0 in epoch milliseconds
TS_S = 1767603600
SECRET = "SECabc123"
KEY = "8f0c1d7e-0000-5000-8000-000000000001"
LINK = "https://kpi.example.com/s/s-001"
AID = alert_id("s-001", "customer_satisfaction", 1)

ALERT = AlertPayload(
    alert_id=AID,
    status="firing",
    specialist_id="s-001",
    team_id="t-1",
    kpi="customer_satisfaction",
    window="30d",
    value=0.8,
    qualified=0.85,
    grade="unqualified",
    samples=20,
    started_at=T0,
    resolved_at=None,
    message="CSAT below line",
)
RESOLVED = ALERT.model_copy(
    update={
        "alert_id": "b-1",
        "status": "resolved",
        "value": 0.87,
        "grade": "qualified",
        "resolved_at": T0 + timedelta(hours=5),
    }
)
HOURS = ALERT.model_copy(
    update={
        "alert_id": "c-1",
        "specialist_id": "s-002",
        "kpi": "avg_response_time_hours",
        "value": 25.5,
        "qualified": 24.0,
    }
)


def compact(obj: Any) -> bytes:
    """Independent serializer: stdlib json, compact, UTF-8 (what orjson must produce)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


ZH_FIRING = (
    "[告警] s-001 客户满意度低于合格线\n"
    "专员：s-001\n"
    "指标：客户满意度 (customer_satisfaction)\n"
    "统计窗口：30d\n"
    "当前值：80%\n"
    "合格线：≥ 85%\n"
    "样本数：20\n"
    "状态：告警中\n"
    "开始时间：2026-01-05 09:00 UTC\n"
    "详情：https://kpi.example.com/s/s-001"
)
EN_FIRING = (
    "[FIRING] s-001: Customer satisfaction (CSAT) below the qualified line\n"
    "Specialist: s-001\n"
    "KPI: Customer satisfaction (CSAT) (customer_satisfaction)\n"
    "Window: 30d\n"
    "Value: 80%\n"
    "Qualified line: ≥ 85%\n"
    "Samples: 20\n"
    "Status: firing\n"
    "Started: 2026-01-05 09:00 UTC\n"
    "Details: https://kpi.example.com/s/s-001"
)
ZH_MARKDOWN = (
    "### \\[告警\\] s-001 客户满意度低于合格线\n\n"
    "**专员**：s-001\n\n"
    "**指标**：客户满意度 (customer\\_satisfaction)\n\n"
    "**统计窗口**：30d\n\n"
    "**当前值**：80%\n\n"
    "**合格线**：≥ 85%\n\n"
    "**样本数**：20\n\n"
    "**状态**：告警中\n\n"
    "**开始时间**：2026-01-05 09:00 UTC\n\n"
    "**详情**：[查看详情](https://kpi.example.com/s/s-001)"
)
EN_SLACK = (
    "*[FIRING] s-001: Customer satisfaction (CSAT) below the qualified line*\n"
    "*Specialist*: s-001\n"
    "*KPI*: Customer satisfaction (CSAT) (customer_satisfaction)\n"
    "*Window*: 30d\n"
    "*Value*: 80%\n"
    "*Qualified line*: ≥ 85%\n"
    "*Samples*: 20\n"
    "*Status*: firing\n"
    "*Started*: 2026-01-05 09:00 UTC\n"
    "*Details*: <https://kpi.example.com/s/s-001|Open dashboard>"
)


# ----------------------------------------------------------------------- payload


def test_alert_payload_json_is_exactly_the_spec_fields() -> None:
    expected = (
        '{"alert_id":"' + AID + '","status":"firing","specialist_id":"s-001",'
        '"team_id":"t-1","kpi":"customer_satisfaction","window":"30d","value":0.8,'
        '"qualified":0.85,"grade":"unqualified","samples":20,'
        '"started_at":"2026-01-05T09:00:00Z","resolved_at":null,"message":"CSAT below line"}'
    ).encode()
    assert ALERT.to_json() == expected
    assert list(json.loads(expected)) == [
        "alert_id",
        "status",
        "specialist_id",
        "team_id",
        "kpi",
        "window",
        "value",
        "qualified",
        "grade",
        "samples",
        "started_at",
        "resolved_at",
        "message",
    ]


def test_payload_datetimes_are_rfc3339_utc() -> None:
    shanghai = datetime(2026, 1, 6, 1, 0, tzinfo=timezone(timedelta(hours=8)))
    p = ALERT.model_copy(update={"started_at": shanghai})
    assert json.loads(p.to_json())["started_at"] == "2026-01-05T17:00:00Z"
    with pytest.raises(ValueError):
        AlertPayload.model_validate({**ALERT.model_dump(), "started_at": datetime(2026, 1, 5)})
    with pytest.raises(ValueError):
        AlertPayload.model_validate({**ALERT.model_dump(), "extra": 1})


def test_make_payload_from_state() -> None:
    o = Observation(
        "s-001", "customer_satisfaction", "30d", 0.8, 16, 20, "unqualified", 0.85, 0.9, 10, True, T0
    )
    state = decide(None, o, T0, RuleConfig(), False).state
    p = make_payload(state, team_id="t-1", lang="zh-CN", link=LINK)
    assert p.model_dump(exclude={"message"}) == ALERT.model_dump(exclude={"message"})
    assert p.message == ZH_FIRING
    later = replace(o, value=0.95, grade="excellent", observed_at=T0 + timedelta(hours=5))
    resolved = decide(state, later, T0 + timedelta(hours=5), RuleConfig(), False).state
    rp = make_payload(resolved, team_id="t-1", lang="en")
    assert (rp.status, rp.resolved_at, rp.alert_id) == ("resolved", T0 + timedelta(hours=5), AID)
    assert rp.message.startswith("[RESOLVED] s-001: Customer satisfaction (CSAT) back above")


# ----------------------------------------------------------------------- generic webhook


def test_webhook_golden() -> None:
    ch = WebhookChannel("wh-1", "https://hooks.example.com/kpi", SECRET)
    req = build_webhook(ch, ALERT, delivery_key=KEY)
    body = ALERT.to_json()
    assert req == OutgoingRequest(
        "POST",
        "https://hooks.example.com/kpi",
        {
            "Content-Type": "application/json",
            "X-KPI-Delivery": KEY,
            "X-KPI-Signature": "sha256=" + hmac_hex(SECRET, body),
        },
        body,
    )
    assert verify_webhook_signature(SECRET, req.body, req.headers["X-KPI-Signature"])


def test_webhook_grouped_body() -> None:
    ch = WebhookChannel("wh-1", "https://hooks.example.com/kpi", SECRET)
    req = build_webhook(ch, [ALERT, RESOLVED], delivery_key=KEY)
    expected = compact({"alerts": [json.loads(ALERT.to_json()), json.loads(RESOLVED.to_json())]})
    assert req.body == expected
    assert json.loads(req.body)["alerts"][1]["resolved_at"] == "2026-01-05T14:00:00Z"
    assert req.headers["X-KPI-Signature"] == "sha256=" + hmac_hex(SECRET, expected)


def test_verify_webhook_signature() -> None:
    body = b'{"a":1}'
    good = "sha256=" + hmac_hex(SECRET, body)
    assert verify_webhook_signature(SECRET, body, good)
    assert verify_webhook_signature(SECRET.encode(), body, good.upper().replace("SHA256", "sha256"))
    assert not verify_webhook_signature(SECRET, body + b" ", good)
    assert not verify_webhook_signature("other", body, good)
    assert not verify_webhook_signature(SECRET, body, None)
    assert not verify_webhook_signature(SECRET, body, "")
    assert not verify_webhook_signature(SECRET, body, good.removeprefix("sha256="))
    assert not verify_webhook_signature(SECRET, body, "sha256=é" + good[8:])


# ----------------------------------------------------------------------- DingTalk


def test_dingtalk_golden_signed() -> None:
    ch = DingTalkChannel("dt-1", "https://oapi.dingtalk.com/robot/send?access_token=TOKEN", SECRET)
    req = build_dingtalk(ch, ALERT, lang="zh-CN", link=LINK, now=T0, delivery_key=KEY)
    digest = hmac.new(SECRET.encode(), f"{TS_MS}\n{SECRET}".encode(), hashlib.sha256).digest()
    sign = urllib.parse.quote_plus(base64.b64encode(digest))
    assert req.url == (
        f"https://oapi.dingtalk.com/robot/send?access_token=TOKEN&timestamp={TS_MS}&sign={sign}"
    )
    assert req.method == "POST"
    assert req.headers == {"Content-Type": "application/json", "X-KPI-Delivery": KEY}
    assert req.body == compact(
        {
            "msgtype": "markdown",
            "markdown": {"title": "[告警] s-001 客户满意度低于合格线", "text": ZH_MARKDOWN},
        }
    )


def test_dingtalk_unsigned_keeps_url() -> None:
    ch = DingTalkChannel("dt-1", "https://oapi.dingtalk.com/robot/send?access_token=TOKEN")
    req = build_dingtalk(ch, ALERT, lang="zh-CN", link=LINK, now=T0)
    assert req.url == "https://oapi.dingtalk.com/robot/send?access_token=TOKEN"
    assert req.headers == {"Content-Type": "application/json"}


# ----------------------------------------------------------------------- WeCom


def test_wecom_golden() -> None:
    ch = WeComChannel("wc-1", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K")
    req = build_wecom(ch, ALERT, lang="zh-CN", link=LINK, delivery_key=KEY)
    assert req.url == "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K"
    assert req.body == compact({"msgtype": "markdown", "markdown": {"content": ZH_MARKDOWN}})


def test_wecom_stays_under_4096_bytes() -> None:
    many = [
        ALERT.model_copy(update={"alert_id": f"a{i}", "specialist_id": f"专员-{i:04d}" * 3})
        for i in range(200)
    ]
    ch = WeComChannel("wc-1", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K")
    content = json.loads(build_wecom(ch, many, lang="zh-CN", link=LINK).body)["markdown"]["content"]
    assert len(content.encode()) <= 4096
    assert content.endswith("…")


# ----------------------------------------------------------------------- Feishu / Lark


def test_feishu_text_golden_signed() -> None:
    ch = FeishuChannel("fs-1", "https://open.feishu.cn/open-apis/bot/v2/hook/H", SECRET, card=False)
    req = build_feishu(ch, ALERT, lang="en", link=LINK, now=T0, delivery_key=KEY)
    key = f"{TS_S}\n{SECRET}".encode()
    sign = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert req.body == compact(
        {
            "timestamp": str(TS_S),
            "sign": sign,
            "msg_type": "text",
            "content": {"text": EN_FIRING},
        }
    )
    assert req.url == "https://open.feishu.cn/open-apis/bot/v2/hook/H"


def test_feishu_card_golden() -> None:
    ch = FeishuChannel("fs-1", "https://open.feishu.cn/open-apis/bot/v2/hook/H")
    req = build_feishu(ch, ALERT, lang="zh-CN", link=LINK, now=T0)
    text_without_link = ZH_MARKDOWN.rsplit("\n\n", 1)[0]
    assert req.body == compact(
        {
            "msg_type": "interactive",
            "card": {
                "config": {"wide_screen_mode": True},
                "header": {
                    "title": {"tag": "plain_text", "content": "[告警] s-001 客户满意度低于合格线"},
                    "template": "red",
                },
                "elements": [
                    {"tag": "div", "text": {"tag": "lark_md", "content": text_without_link}},
                    {
                        "tag": "action",
                        "actions": [
                            {
                                "tag": "button",
                                "text": {"tag": "plain_text", "content": "查看详情"},
                                "url": LINK,
                                "type": "primary",
                            }
                        ],
                    },
                ],
            },
        }
    )
    resolved = build_feishu(ch, RESOLVED, lang="zh-CN", link=None, now=T0)
    card = json.loads(resolved.body)["card"]
    assert card["header"]["template"] == "green"
    assert [e["tag"] for e in card["elements"]] == ["div"]


# ----------------------------------------------------------------------- Slack


def test_slack_golden() -> None:
    ch = SlackChannel("sl-1", "https://hooks.slack.com/services/T000/B000/XXXX")
    req = build_slack(ch, ALERT, lang="en", link=LINK, delivery_key=KEY)
    title = "[FIRING] s-001: Customer satisfaction (CSAT) below the qualified line"
    assert req.body == compact(
        {
            "text": title,
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": title}},
                {"type": "section", "text": {"type": "mrkdwn", "text": EN_SLACK}},
            ],
        }
    )
    assert req.headers == {"Content-Type": "application/json", "X-KPI-Delivery": KEY}


def test_slack_escapes_user_data() -> None:
    evil = ALERT.model_copy(update={"specialist_id": "<!channel> & <http://x|y>"})
    ch = SlackChannel("sl-1", "https://hooks.slack.com/services/T000/B000/XXXX")
    section = json.loads(build_slack(ch, evil, lang="en", link=None).body)["blocks"][1]
    assert "<!channel>" not in section["text"]["text"]
    assert "&lt;!channel&gt; &amp; &lt;http://x|y&gt;" in section["text"]["text"]


def test_build_request_dispatches() -> None:
    chans: list[HttpChannel] = [
        WebhookChannel("a", "https://h.example.com/x", SECRET),
        DingTalkChannel("b", "https://oapi.dingtalk.com/robot/send?access_token=T"),
        WeComChannel("c", "https://qyapi.weixin.qq.com/x?key=K"),
        FeishuChannel("d", "https://open.feishu.cn/x"),
        SlackChannel("e", "https://hooks.slack.com/services/x"),
    ]
    for ch in chans:
        req = build_request(ch, ALERT, lang="en", link=LINK, now=T0, delivery_key=KEY)
        assert req.headers["X-KPI-Delivery"] == KEY
        assert req.url.startswith(ch.url)
        json.loads(req.body)


# ----------------------------------------------------------------------- texts


def test_texts_zh_and_en() -> None:
    assert render_text(ALERT, "zh-CN", LINK) == ZH_FIRING
    assert render_text(ALERT, "en", LINK) == EN_FIRING
    assert render_text(ALERT, "zh", LINK) == ZH_FIRING
    assert render_text(ALERT, "en", LINK, fmt="slack") == EN_SLACK
    assert render_text(ALERT, "zh-CN", LINK, fmt="markdown") == ZH_MARKDOWN


def test_resolved_and_reminder_texts() -> None:
    assert render_text(RESOLVED, "zh-CN", None) == (
        "[已恢复] s-001 客户满意度已恢复至合格线以上\n"
        "专员：s-001\n"
        "指标：客户满意度 (customer_satisfaction)\n"
        "统计窗口：30d\n"
        "当前值：87%\n"
        "合格线：≥ 85%\n"
        "样本数：20\n"
        "状态：已恢复\n"
        "开始时间：2026-01-05 09:00 UTC\n"
        "恢复时间：2026-01-05 14:00 UTC"
    )
    assert render_text(HOURS, "en", None, kind="reminder") == (
        "[REMINDER] s-002: Average response time below the qualified line\n"
        "Specialist: s-002\n"
        "KPI: Average response time (avg_response_time_hours)\n"
        "Window: 30d\n"
        "Value: 25.5 h\n"
        "Qualified line: ≤ 24.0 h\n"
        "Samples: 20\n"
        "Status: still firing (reminder)\n"
        "Started: 2026-01-05 09:00 UTC"
    )
    assert render_title(HOURS, "zh-CN", kind="reminder", names={"s-002": "李四"}) == (
        "[提醒] 李四 (s-002) 平均响应时间低于合格线"
    )


def test_group_texts() -> None:
    group = [RESOLVED, HOURS, ALERT]
    kinds: dict[str, NotifyKind] = {"c-1": "reminder"}
    assert render_group_text(group, "zh-CN", LINK, kinds=kinds) == (
        "[KPI 告警] 团队 t-1：2 条告警，1 条已恢复\n"
        "- [告警] s-001 · 客户满意度：80%（合格线 ≥ 85%，样本数 20）\n"
        "- [提醒] s-002 · 平均响应时间：25.5 小时（合格线 ≤ 24.0 小时，样本数 20）\n"
        "- [已恢复] s-001 · 客户满意度：87%（合格线 ≥ 85%，样本数 20）\n"
        "详情：https://kpi.example.com/s/s-001"
    )
    assert render_group_text(group, "en", None) == (
        "[KPI alerts] Team t-1: 2 firing, 1 resolved\n"
        "- [FIRING] s-001 · Customer satisfaction (CSAT): 80% (Qualified line ≥ 85%, Samples 20)\n"
        "- [FIRING] s-002 · Average response time: 25.5 h (Qualified line ≤ 24.0 h, Samples 20)\n"
        "- [RESOLVED] s-001 · Customer satisfaction (CSAT): 87% (Qualified line ≥ 85%, Samples 20)"
    )
    assert render_group_title([ALERT], "en", team_id="ops") == "[KPI alerts] Team ops: 1 firing"
    lines = render_group_text([ALERT] * 5, "en", None, limit=2).splitlines()
    assert lines[-1] == "- … and 3 more" and len(lines) == 4


def test_value_formats() -> None:
    assert format_value("resolution_rate", 0.8995, "en") == "89.95%"
    assert format_value("resolution_rate", 1.0, "en") == "100%"
    assert format_value("avg_response_time_hours", 3.0, "en") == "3.0 h"
    assert format_value("avg_response_time_hours", 3.04, "zh-CN") == "3.0 小时"
    assert format_value("training_sessions", 2.0, "en") == "2"
    assert format_value("nps", None, "en") == "—"
    assert format_line("avg_response_time_hours", 24, "en") == "≤ 24.0 h"
    assert kpi_name("record_accuracy", "zh-CN") == "服务记录准确率"
    assert kpi_name("collaboration_score", "zh-CN") == "团队协作满意度"
    assert kpi_name("custom_kpi", "en") == "custom_kpi"
    assert normalize_lang("zh_CN") == "zh-CN" and normalize_lang("fr") == "en"


# ----------------------------------------------------------------------- email


def _parts(msg: EmailMessage) -> tuple[str, str]:
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    return text.get_content(), html.get_content()


def test_email_single_alert() -> None:
    msg = build_email(
        ALERT,
        "zh-CN",
        LINK,
        "kpi@example.com",
        ["lead@example.com", "hr@example.com"],
        now=T0,
        delivery_key=KEY,
    )
    assert msg["Subject"] == "[告警] s-001 客户满意度低于合格线"
    assert msg["From"] == "kpi@example.com"
    assert msg["To"] == "lead@example.com, hr@example.com"
    assert msg["Date"] == "Mon, 05 Jan 2026 09:00:00 +0000"
    assert msg["Message-ID"] == f"<{KEY}@kpi-notify>"
    assert msg["X-KPI-Delivery"] == KEY
    assert msg.get_content_type() == "multipart/alternative"
    text, html = _parts(msg)
    assert text == ZH_FIRING + "\n"
    assert '<html lang="zh-CN">' in html
    assert '<tr><th align="left">当前值</th><td>80%</td></tr>' in html
    assert f'<a href="{LINK}">查看详情</a>' in html


def test_email_html_escapes_user_data_and_subject_has_no_newlines() -> None:
    evil = ALERT.model_copy(update={"specialist_id": '<script>alert("x")</script>\r\nBcc: a@b'})
    msg = build_email([evil, RESOLVED], "en", LINK, "kpi@example.com", ["lead@example.com"])
    _, html = _parts(msg)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
    assert msg["Bcc"] is None
    assert msg["Subject"] == "[KPI alerts] Team t-1: 1 firing, 1 resolved"
    single = build_email(evil, "en", None, "kpi@example.com", ["lead@example.com"])
    assert "\n" not in single["Subject"] and single["Bcc"] is None


def test_email_requires_recipients() -> None:
    with pytest.raises(ValueError):
        build_email(ALERT, "en", None, "kpi@example.com", [])


# ----------------------------------------------------------------------- secrets


def test_secrets_never_in_repr_or_str() -> None:
    ding = DingTalkChannel(
        "b", "https://oapi.dingtalk.com/robot/send?access_token=TOPSECRET", "TOPSECRET"
    )
    chans: list[object] = [
        WebhookChannel("a", "https://h.example.com/hook?token=TOPSECRET", "TOPSECRET"),
        ding,
        WeComChannel("c", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=TOPSECRET"),
        FeishuChannel("d", "https://open.feishu.cn/open-apis/bot/v2/hook/TOPSECRET", "TOPSECRET"),
        SlackChannel("e", "https://hooks.slack.com/services/T/B/TOPSECRET"),
        EmailChannel("f", "kpi@example.com", ("a@example.com",), password="TOPSECRET"),
    ]
    for ch in chans:
        for shown in (repr(ch), str(ch), f"{ch}", repr([ch])):
            assert "TOPSECRET" not in shown, shown
    assert "secret='***'" in repr(chans[0])
    req = build_dingtalk(ding, ALERT, lang="en", link=None, now=T0)
    assert "TOPSECRET" not in repr(req) and "sign=" not in repr(req)
    assert mask_url("https://hooks.slack.com/services/T/B/X") == "https://hooks.slack.com/***"
    assert mask_url("http://localhost:8080/") == "http://localhost:8080"
    assert mask_url("not a url") == "***"
