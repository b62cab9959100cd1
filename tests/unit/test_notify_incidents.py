"""Golden platform-health notices for every channel kind and both languages, and their rules."""

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

from chaos.receiver import Delivery
from services.notify.channels import (
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    OutgoingRequest,
    SlackChannel,
    WebhookChannel,
    WeComChannel,
    build_incident_delivery,
    make_incident_payload,
)
from services.notify.health_relay import incident_delivery_key
from services.notify.rules import delivery_key, incident_notice
from shared import health
from shared.health import Incident
from shared.webhooks import IncidentPayload, is_incident, verify_webhook_signature

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=7)
TS_MS = 1767603600000
TS_S = 1767603600
SECRET = "SECabc123"
KEY = "8f0c1d7e-0000-5000-8000-000000000002"
LINK = "https://kpi.example.com/ui/"
SUMMARY = "kpi.events: 1200 records behind, nothing applied for 180 s"

STALL = Incident(
    id=7,
    key="stall:scoring",
    kind="stall",
    service="scoring",
    status="open",
    summary=SUMMARY,
    detail={"group": "kpi-scoring", "lag": 1200},
    occurrences=2,
    opened_at=T0,
    updated_at=T0,
    resolved_at=None,
    resolved_by=None,
)
RESOLVED = replace(STALL, status="resolved", resolved_at=T1, updated_at=T1, resolved_by="auto")
POISON = replace(STALL, id=9, key="poison:scoring", kind="poison", summary="3 records", detail={})


def compact(obj: Any) -> bytes:
    """Independent serializer: stdlib json, compact, UTF-8 (what orjson must produce)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


ZH_FIRING = (
    "[平台告警] KPI 统计停滞 · scoring\n"
    "问题类型：KPI 统计停滞 (stall)\n"
    "服务：scoring\n"
    f"摘要：{SUMMARY}\n"
    "状态：进行中\n"
    "发生次数：2\n"
    "开始时间：2026-01-05 09:00 UTC\n"
    "影响：在问题解决前，KPI 可能停止更新或不完整；看板顶部会显示提示横幅。\n"
    '技术细节：{"group":"kpi-scoring","lag":1200}\n'
    "详情：https://kpi.example.com/ui/"
)
EN_RESOLVED = (
    "[PLATFORM RESOLVED] KPI pipeline stalled · scoring\n"
    "Incident: KPI pipeline stalled (stall)\n"
    "Service: scoring\n"
    f"Summary: {SUMMARY}\n"
    "Status: resolved\n"
    "Occurrences: 2\n"
    "Started: 2026-01-05 09:00 UTC\n"
    "Resolved: 2026-01-05 09:07 UTC\n"
    "Impact: Cleared by itself; KPIs are updating again.\n"
    'Technical detail: {"group":"kpi-scoring","lag":1200}\n'
    "Details: https://kpi.example.com/ui/"
)
ZH_MARKDOWN = (
    "### \\[平台告警\\] KPI 统计停滞 · scoring\n\n"
    "**问题类型**：KPI 统计停滞 (stall)\n\n"
    "**服务**：scoring\n\n"
    f"**摘要**：{SUMMARY}\n\n"
    "**状态**：进行中\n\n"
    "**发生次数**：2\n\n"
    "**开始时间**：2026-01-05 09:00 UTC\n\n"
    "**影响**：在问题解决前，KPI 可能停止更新或不完整；看板顶部会显示提示横幅。\n\n"
    '**技术细节**：{"group":"kpi-scoring","lag":1200}\n\n'
    "**详情**：[查看详情](https://kpi.example.com/ui/)"
)
EN_MARKDOWN_POISON = (
    "### \\[PLATFORM\\] Records dead-lettered (processing failed) · scoring\n\n"
    "**Incident**: Records dead-lettered (processing failed) (poison)\n\n"
    "**Service**: scoring\n\n"
    "**Summary**: 3 records\n\n"
    "**Status**: open\n\n"
    "**Occurrences**: 2\n\n"
    "**Started**: 2026-01-05 09:00 UTC\n\n"
    "**Impact**: KPIs may be stale or incomplete until this is resolved; "
    "the dashboard shows a banner.\n\n"
    "**Details**: [Open dashboard](https://kpi.example.com/ui/)"
)
EN_SLACK_RESOLVED = (
    "*[PLATFORM RESOLVED] KPI pipeline stalled · scoring*\n"
    "*Incident*: KPI pipeline stalled (stall)\n"
    "*Service*: scoring\n"
    f"*Summary*: {SUMMARY}\n"
    "*Status*: resolved\n"
    "*Occurrences*: 2\n"
    "*Started*: 2026-01-05 09:00 UTC\n"
    "*Resolved*: 2026-01-05 09:07 UTC\n"
    "*Impact*: Cleared by itself; KPIs are updating again.\n"
    '*Technical detail*: {"group":"kpi-scoring","lag":1200}\n'
    "*Details*: <https://kpi.example.com/ui/|Open dashboard>"
)


def firing(lang: str = "zh-CN", incident: Incident = STALL) -> IncidentPayload:
    return make_incident_payload(incident, "firing", lang=lang, link=LINK)


def resolved(lang: str = "en") -> IncidentPayload:
    return make_incident_payload(RESOLVED, "resolved", lang=lang, link=LINK)


def http(req: OutgoingRequest | EmailMessage) -> OutgoingRequest:
    assert isinstance(req, OutgoingRequest)
    return req


# ----------------------------------------------------------------------- rules


def test_notice_per_transition() -> None:
    assert incident_notice(STALL) == "firing"
    assert incident_notice(replace(STALL, occurrences=5)) == "firing"
    assert incident_notice(RESOLVED) == "resolved"
    # An admin dismissing an event incident: nobody is told again.
    log_reset = replace(STALL, kind="log_reset", status="resolved", resolved_by="ann")
    assert incident_notice(log_reset) is None


def test_delivery_keys_are_per_incident_status_and_channel() -> None:
    k = incident_delivery_key(7, "firing", "ch-1")
    assert k == incident_delivery_key(7, "firing", "ch-1")
    others = {
        incident_delivery_key(7, "resolved", "ch-1"),
        incident_delivery_key(8, "firing", "ch-1"),
        incident_delivery_key(7, "firing", "ch-2"),
        delivery_key("7", "firing", "ch-1", 0),
    }
    assert k not in others and len(others) == 4
    assert len(k) <= 64  # deliveries.delivery_key


def test_pipeline_status() -> None:
    assert health.pipeline_status([]) == "ok"
    assert health.pipeline_status([POISON]) == "degraded"
    assert health.pipeline_status([POISON, STALL]) == "stalled"
    assert health.pipeline_status([RESOLVED]) == "ok"


# ----------------------------------------------------------------------- payload


def test_incident_payload_json_is_the_documented_body() -> None:
    p = firing()
    assert p.to_json() == compact(
        {
            "type": "platform_incident",
            "incident_id": 7,
            "status": "firing",
            "kind": "stall",
            "service": "scoring",
            "summary": SUMMARY,
            "detail": {"group": "kpi-scoring", "lag": 1200},
            "opened_at": "2026-01-05T09:00:00Z",
            "resolved_at": None,
            "occurrences": 2,
            "message": ZH_FIRING,
        }
    )
    r = json.loads(resolved().to_json())
    assert (r["status"], r["resolved_at"], r["message"]) == (
        "resolved",
        "2026-01-05T09:07:00Z",
        EN_RESOLVED,
    )
    # Stored in the outbox as JSON and read back by the sender: the same body.
    assert IncidentPayload.model_validate_json(p.to_json()) == p
    with pytest.raises(ValueError):
        IncidentPayload.model_validate({**p.model_dump(), "alert_id": "x"})
    with pytest.raises(ValueError):
        IncidentPayload.model_validate({**p.model_dump(), "opened_at": datetime(2026, 1, 5)})


def test_datetimes_are_utc() -> None:
    shanghai = datetime(2026, 1, 5, 17, 0, tzinfo=timezone(timedelta(hours=8)))
    p = make_incident_payload(replace(STALL, opened_at=shanghai), "firing", lang="en")
    assert json.loads(p.to_json())["opened_at"] == "2026-01-05T09:00:00Z"


def test_incident_bodies_are_told_apart_from_alert_bodies() -> None:
    assert is_incident(json.loads(firing().to_json()))
    assert not is_incident({"alert_id": "a", "status": "firing"})
    assert not is_incident({"alerts": []})
    # The chaos harness counts alert transitions from webhook bodies: notices are not alerts.
    d = Delivery("k", firing().to_json(), 200, 0.0)
    assert d.incident and d.items() == []
    alert = Delivery("k", b'{"alert_id":"a","status":"firing"}', 200, 0.0)
    assert not alert.incident and alert.items() == [{"alert_id": "a", "status": "firing"}]


# ----------------------------------------------------------------------- channels


def test_webhook_golden_signed() -> None:
    ch = WebhookChannel("wh-1", "https://hooks.example.com/kpi", SECRET)
    p = firing()
    req = http(build_incident_delivery(ch, p, lang="en", link=LINK, now=T0, delivery_key=KEY))
    body = p.to_json()
    assert req == OutgoingRequest(
        "POST",
        "https://hooks.example.com/kpi",
        {
            "Content-Type": "application/json",
            "X-KPI-Delivery": KEY,
            "X-KPI-Signature": "sha256="
            + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
        },
        body,
    )
    assert verify_webhook_signature(SECRET, req.body, req.headers["X-KPI-Signature"])


def test_dingtalk_golden_zh() -> None:
    ch = DingTalkChannel("dt-1", "https://oapi.dingtalk.com/robot/send?access_token=T", SECRET)
    req = http(
        build_incident_delivery(ch, firing(), lang="zh-CN", link=LINK, now=T0, delivery_key=KEY)
    )
    digest = hmac.new(SECRET.encode(), f"{TS_MS}\n{SECRET}".encode(), hashlib.sha256).digest()
    sign = urllib.parse.quote_plus(base64.b64encode(digest))
    assert req.url == (
        f"https://oapi.dingtalk.com/robot/send?access_token=T&timestamp={TS_MS}&sign={sign}"
    )
    assert req.headers == {"Content-Type": "application/json", "X-KPI-Delivery": KEY}
    assert req.body == compact(
        {
            "msgtype": "markdown",
            "markdown": {"title": "[平台告警] KPI 统计停滞 · scoring", "text": ZH_MARKDOWN},
        }
    )


def test_wecom_golden_en() -> None:
    ch = WeComChannel("wc-1", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K")
    p = firing("en", POISON)
    req = http(build_incident_delivery(ch, p, lang="en", link=LINK, now=T0, delivery_key=KEY))
    assert req.body == compact({"msgtype": "markdown", "markdown": {"content": EN_MARKDOWN_POISON}})


def test_feishu_card_colours_and_text_golden() -> None:
    card = FeishuChannel("fs-1", "https://open.feishu.cn/open-apis/bot/v2/hook/H")
    req = http(
        build_incident_delivery(card, firing(), lang="zh-CN", link=LINK, now=T0, delivery_key=KEY)
    )
    assert req.body == compact(
        {
            "msg_type": "interactive",
            "card": {
                "config": {"wide_screen_mode": True},
                "header": {
                    "title": {"tag": "plain_text", "content": "[平台告警] KPI 统计停滞 · scoring"},
                    "template": "red",
                },
                "elements": [
                    {
                        "tag": "div",
                        "text": {"tag": "lark_md", "content": ZH_MARKDOWN.rsplit("\n\n", 1)[0]},
                    },
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

    def template(p: IncidentPayload) -> str:
        r = http(build_incident_delivery(card, p, lang="en", link=None, now=T0, delivery_key=KEY))
        return str(json.loads(r.body)["card"]["header"]["template"])

    assert template(firing("en", POISON)) == "orange"
    assert template(resolved()) == "green"
    text = FeishuChannel("fs-2", "https://open.feishu.cn/x", SECRET, card=False)
    req = http(
        build_incident_delivery(text, resolved(), lang="en", link=LINK, now=T0, delivery_key=KEY)
    )
    key = f"{TS_S}\n{SECRET}".encode()
    sign = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert req.body == compact(
        {"timestamp": str(TS_S), "sign": sign, "msg_type": "text", "content": {"text": EN_RESOLVED}}
    )


def test_slack_golden_en() -> None:
    ch = SlackChannel("sl-1", "https://hooks.slack.com/services/T/B/X")
    req = http(
        build_incident_delivery(ch, resolved(), lang="en", link=LINK, now=T0, delivery_key=KEY)
    )
    title = "[PLATFORM RESOLVED] KPI pipeline stalled · scoring"
    assert req.body == compact(
        {
            "text": title,
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": title}},
                {"type": "section", "text": {"type": "mrkdwn", "text": EN_SLACK_RESOLVED}},
            ],
        }
    )
    assert req.headers["X-KPI-Delivery"] == KEY


@pytest.mark.parametrize(
    ("lang", "subject", "plain"),
    [
        ("zh-CN", "[平台告警] KPI 统计停滞 · scoring", ZH_FIRING),
        ("en", "[PLATFORM] KPI pipeline stalled · scoring", None),
    ],
)
def test_email_both_languages(lang: str, subject: str, plain: str | None) -> None:
    ch = EmailChannel("m-1", "kpi@example.com", ("ops@example.com",))
    msg = build_incident_delivery(ch, firing(lang), lang=lang, link=LINK, now=T0, delivery_key=KEY)
    assert isinstance(msg, EmailMessage)
    assert msg["Subject"] == subject
    assert msg["To"] == "ops@example.com" and msg["X-KPI-Delivery"] == KEY
    assert msg["Message-ID"] == f"<{KEY}@kpi-notify>"
    text = msg.get_body(("plain",))
    page = msg.get_body(("html",))
    assert isinstance(text, EmailMessage) and isinstance(page, EmailMessage)
    if plain is not None:
        assert text.get_content() == plain + "\n"
    assert f'<html lang="{lang}">' in page.get_content()
    assert f'<a href="{LINK}">' in page.get_content()


def test_user_data_is_escaped() -> None:
    evil = replace(
        STALL, summary="<script>x</script> *bold* <!channel>\r\nBcc: a@b", service="scoring"
    )
    p = make_incident_payload(evil, "firing", lang="en", link=None)
    mail = build_incident_delivery(
        EmailChannel("m", "kpi@example.com", ("o@example.com",)),
        p,
        lang="en",
        link=None,
        now=T0,
        delivery_key=KEY,
    )
    assert isinstance(mail, EmailMessage) and mail["Bcc"] is None
    page = mail.get_body(("html",))
    assert isinstance(page, EmailMessage) and "<script>" not in page.get_content()
    slack = http(
        build_incident_delivery(
            SlackChannel("s", "https://hooks.slack.com/x"),
            p,
            lang="en",
            link=None,
            now=T0,
            delivery_key=KEY,
        )
    )
    assert "<!channel>" not in json.loads(slack.body)["blocks"][1]["text"]["text"]
    ding = http(
        build_incident_delivery(
            DingTalkChannel("d", "https://oapi.dingtalk.com/robot/send?access_token=T"),
            p,
            lang="en",
            link=None,
            now=T0,
            delivery_key=KEY,
        )
    )
    assert "\\*bold\\*" in json.loads(ding.body)["markdown"]["text"]
