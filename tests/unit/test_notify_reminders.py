"""Appraisal-cycle reminder notices: the webhook body, golden texts in both languages for the
supervisor and the specialist, every channel kind, escaping, keys and the delivery-log item."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from email.message import EmailMessage
from typing import Any

import pytest

from services.notify.channels import (
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    OutgoingRequest,
    SlackChannel,
    WebhookChannel,
    build_reminder_delivery,
    make_reminder_payload,
)
from services.notify.egress import Refused
from services.notify.handlers.deliveries import _item_out
from services.notify.handlers.reminders import reminder_delivery_key
from services.notify.rules import delivery_key
from shared.notify_api import DeliveryItem, IncidentDeliveryItem, ReminderDeliveryItem
from shared.reminders import Reminder
from shared.webhooks import (
    ReminderPayload,
    is_incident,
    is_reminder,
    verify_webhook_signature,
)

T0 = dt.datetime(2026, 10, 16, 1, 0, tzinfo=dt.UTC)
SECRET = "SECabc123"
KEY = "8f0c1d7e-0000-5000-8000-000000000003"
LINK = "https://kpi.example.com/ui/#/specialist/s-43"

MEETING = Reminder(
    id=3,
    key='["meeting_not_held","s-43","2026Q3","0"]',
    kind="meeting_not_held",
    specialist_id="s-43",
    team_id="north",
    quarter="2026Q3",
    due=dt.date(2026, 10, 16),
    subject={"finalized_on": "2026-10-02", "days_since_finalized": 14, "meeting_status": "none"},
    created_at=T0,
    relayed_at=None,
)
GOALS = replace(
    MEETING,
    id=4,
    kind="goal_due",
    quarter="2026Q4",
    due=dt.date(2026, 12, 31),
    subject={
        "plan_status": "open",
        "days_left": 3,
        "goals": [
            {"kpi": "resolution_rate", "target": 0.9, "due": "2026-12-31", "value": 0.8,
             "status": "behind"},
            {"kpi": "training_sessions", "target": 1.0, "due": "2026-12-31", "value": 0.0,
             "status": "behind"},
        ],
    },
)  # fmt: skip
OVERDUE = replace(
    GOALS,
    id=5,
    kind="plan_overdue",
    subject={
        "plan_status": "on_track",
        "days_overdue": 5,
        "goals": [{"kpi": "resolution_rate", "target": 0.9, "due": "2026-12-31"}],
    },
)

ZH_MEETING = (
    "[面谈提醒] 王芳 (s-43) 2026Q3 的反馈面谈尚未进行\n"
    "专员：王芳 (s-43)\n"
    "考核季度：2026Q3\n"
    "定稿日期：2026-10-02 (14 天前)\n"
    "面谈状态：未安排\n"
    "应于此日前面谈：2026-10-16\n"
    "下一步：请与专员进行反馈面谈，并在看板中记录面谈要点与约定行动。\n"
    f"详情：{LINK}"
)
EN_GOALS_SPECIALIST = (
    "[GOAL REMINDER] 2 goals of your improvement plan (2026Q4) due 2026-12-31\n"
    "Specialist: 王芳 (s-43)\n"
    "Plan quarter: 2026Q4\n"
    "Due: 2026-12-31 (3 days left)\n"
    "Plan status: open\n"
    "Goals: Resolution rate ≥ 90% (now 80%, behind); Training & contribution ≥ 1 (now 0, behind)\n"
    "Next step: See your progress and add progress notes in the dashboard.\n"
    f"Details: {LINK}"
)
EN_OVERDUE = (
    "[PLAN OVERDUE] 王芳 (s-43): improvement plan 2026Q4 is overdue\n"
    "Specialist: 王芳 (s-43)\n"
    "Plan quarter: 2026Q4\n"
    "Last due date: 2026-12-31 (5 days overdue)\n"
    "Plan status: on track\n"
    "Goals: Resolution rate ≥ 90% (due 2026-12-31)\n"
    "Next step: Review the plan: mark it achieved or missed, or move its goals' due dates."
)


def payload(
    r: Reminder = MEETING, audience: Any = "supervisor", lang: str = "zh-CN", **kw: Any
) -> ReminderPayload:
    return make_reminder_payload(
        r, audience, name=kw.get("name", "王芳"), lang=lang, link=kw.get("link", LINK)
    )


def http(req: OutgoingRequest | EmailMessage) -> OutgoingRequest:
    assert isinstance(req, OutgoingRequest)
    return req


def test_the_webhook_body_is_the_documented_one() -> None:
    p = payload()
    assert json.loads(p.to_json()) == {
        "type": "cycle_reminder",
        "reminder_id": 3,
        "kind": "meeting_not_held",
        "audience": "supervisor",
        "specialist_id": "s-43",
        "name": "王芳",
        "team_id": "north",
        "quarter": "2026Q3",
        "due": "2026-10-16",
        "detail": {
            "finalized_on": "2026-10-02",
            "days_since_finalized": 14,
            "meeting_status": "none",
        },
        "created_at": "2026-10-16T01:00:00Z",
        "message": ZH_MEETING,
    }
    # Stored in the outbox as JSON and read back by the sender: the same body.
    assert ReminderPayload.model_validate_json(p.to_json()) == p
    assert ReminderPayload.model_validate(p.to_json_dict()) == p
    assert is_reminder(p.to_json_dict()) and not is_incident(p.to_json_dict())
    assert not is_reminder({"alert_id": "a", "status": "firing"})
    with pytest.raises(ValueError):
        ReminderPayload.model_validate({**p.to_json_dict(), "kind": "birthday"})
    with pytest.raises(ValueError):
        ReminderPayload.model_validate({**p.to_json_dict(), "created_at": "2026-10-16T01:00:00"})


def test_texts_in_both_languages_for_both_readers() -> None:
    assert payload().message == ZH_MEETING
    assert payload(GOALS, "specialist", "en").message == EN_GOALS_SPECIALIST
    assert payload(OVERDUE, "supervisor", "en", link=None).message == EN_OVERDUE
    titles = {
        (r.kind, a, lang): payload(r, a, lang).message.splitlines()[0]
        for r in (MEETING, GOALS, OVERDUE)
        for a in ("supervisor", "specialist")
        for lang in ("zh-CN", "en")
    }
    assert (
        titles[("meeting_not_held", "specialist", "zh-CN")]
        == "[面谈提醒] 您 2026Q3 的反馈面谈尚未进行"
    )
    assert titles[("meeting_not_held", "supervisor", "en")] == (
        "[MEETING REMINDER] 王芳 (s-43): 2026Q3 feedback meeting not held yet"
    )
    assert titles[("goal_due", "supervisor", "zh-CN")] == (
        "[目标提醒] 王芳 (s-43) 的改进计划（2026Q4）有 2 个目标将于 2026-12-31 到期"
    )
    assert (
        titles[("plan_overdue", "specialist", "zh-CN")] == "[计划逾期] 您的改进计划（2026Q4）已逾期"
    )
    assert titles[("plan_overdue", "specialist", "en")] == (
        "[PLAN OVERDUE] Your improvement plan (2026Q4) is overdue"
    )
    assert len(set(titles.values())) == len(titles)
    # Without a name the id stands alone; a goal due today says so.
    today = replace(GOALS, subject={**GOALS.subject, "days_left": 0})
    text = payload(today, "supervisor", "en", name=None).message
    assert text.startswith("[GOAL REMINDER] s-43: 2 improvement-plan goals (2026Q4) due")
    assert "Due: 2026-12-31 (due today)" in text


def test_odd_details_do_not_break_the_text() -> None:
    odd = replace(
        GOALS, subject={"goals": [{"kpi": "nope"}, "x", {"target": True}], "days_left": "3"}
    )
    text = payload(odd, "supervisor", "en").message
    assert "Goals: nope — (now —); — — (now —)" in text and "days left" not in text
    assert "Plan status: —" in text
    bare = replace(MEETING, subject={}, due=None)
    assert "Meeting: not scheduled" in payload(bare, "supervisor", "en").message


def test_webhook_signed_with_the_exact_body() -> None:
    ch = WebhookChannel("wh-1", "https://hooks.example.com/kpi", SECRET)
    p = payload(GOALS)
    req = http(build_reminder_delivery(ch, p, lang="en", link=LINK, now=T0, delivery_key=KEY))
    assert req.body == p.to_json() and req.headers["X-KPI-Delivery"] == KEY
    assert verify_webhook_signature(SECRET, req.body, req.headers["X-KPI-Signature"])


def test_robots_get_the_rendered_card() -> None:
    ding = DingTalkChannel("dt-1", "https://oapi.dingtalk.com/robot/send?access_token=T")
    req = http(
        build_reminder_delivery(ding, payload(), lang="zh-CN", link=LINK, now=T0, delivery_key=KEY)
    )
    body = json.loads(req.body)
    assert body["markdown"]["title"] == "[面谈提醒] 王芳 (s-43) 2026Q3 的反馈面谈尚未进行"
    assert "**面谈状态**：未安排" in body["markdown"]["text"]
    assert f"[查看详情]({LINK})" in body["markdown"]["text"]
    card = FeishuChannel("fs-1", "https://open.feishu.cn/open-apis/bot/v2/hook/H")

    def colour(r: Reminder) -> str:
        out = http(
            build_reminder_delivery(
                card, payload(r), lang="en", link=None, now=T0, delivery_key=KEY
            )
        )
        return str(json.loads(out.body)["card"]["header"]["template"])

    assert (colour(MEETING), colour(GOALS), colour(OVERDUE)) == ("blue", "blue", "orange")
    slack = SlackChannel("sl-1", "https://hooks.slack.com/services/T/B/X")
    req = http(
        build_reminder_delivery(
            slack, payload(OVERDUE, lang="en"), lang="en", link=LINK, now=T0, delivery_key=KEY
        )
    )
    assert (
        json.loads(req.body)["text"]
        == "[PLAN OVERDUE] 王芳 (s-43): improvement plan 2026Q4 is overdue"
    )


def test_email_to_the_team_or_to_the_specialist() -> None:
    ch = EmailChannel("m-1", "kpi@example.com", ("ann@example.com",))
    team = build_reminder_delivery(ch, payload(), lang="zh-CN", link=LINK, now=T0, delivery_key=KEY)
    assert isinstance(team, EmailMessage) and team["To"] == "ann@example.com"
    assert team["Subject"] == "[面谈提醒] 王芳 (s-43) 2026Q3 的反馈面谈尚未进行"
    mine = build_reminder_delivery(
        ch,
        payload(GOALS, "specialist", "en"),
        lang="en",
        link=LINK,
        now=T0,
        delivery_key=KEY,
        recipients=["wang.fang@example.com", "wf@example.com"],
    )
    assert isinstance(mine, EmailMessage)
    assert mine["To"] == "wang.fang@example.com, wf@example.com"
    assert (
        mine["Subject"]
        == "[GOAL REMINDER] 2 goals of your improvement plan (2026Q4) due 2026-12-31"
    )
    text = mine.get_body(("plain",))
    assert isinstance(text, EmailMessage) and text.get_content() == EN_GOALS_SPECIALIST + "\n"
    # A specialist's copy never lands in a chat (the channel stopped being email since).
    hook = WebhookChannel("wh-1", "https://hooks.example.com/kpi", SECRET)
    with pytest.raises(Refused, match="email only"):
        build_reminder_delivery(hook, payload(), lang="en", link=None, now=T0, delivery_key=KEY,
                                recipients=["wf@example.com"])  # fmt: skip


def test_user_data_is_escaped() -> None:
    evil = replace(MEETING, specialist_id="s*1_[x](http://evil)", quarter="2026Q3")
    p = payload(evil, name="<script>x</script> *b*\r\nBcc: a@b", lang="en")
    mail = build_reminder_delivery(
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
    ding = http(
        build_reminder_delivery(
            DingTalkChannel("d", "https://oapi.dingtalk.com/x"),
            p,
            lang="en",
            link=None,
            now=T0,
            delivery_key=KEY,
        )
    )
    text = json.loads(ding.body)["markdown"]["text"]
    assert "\\*b\\*" in text and "\\[x\\](http://evil)" in text and "<script>" not in text


def test_delivery_keys_per_reminder_reader_and_channel() -> None:
    k = reminder_delivery_key(3, "supervisor", "ch-1")
    others = {
        reminder_delivery_key(3, "specialist", "ch-1"),
        reminder_delivery_key(4, "supervisor", "ch-1"),
        reminder_delivery_key(3, "supervisor", "ch-2"),
        delivery_key("3", "supervisor", "ch-1", 0),
        delivery_key("platform_incident:3", "firing", "ch-1", 0),
    }
    assert k == reminder_delivery_key(3, "supervisor", "ch-1")
    assert k not in others and len(others) == 5 and len(k) <= 64


def test_the_delivery_log_names_the_reminder_not_the_address() -> None:
    p = payload(GOALS, "specialist", "en")
    item = {"payload": p.to_json_dict(), "kind": "reminder", "name": "王芳", "link": LINK,
            "to": ["wang.fang@example.com"]}  # fmt: skip
    out = _item_out(item)
    assert "wang.fang" not in json.dumps(out)
    parsed = ReminderDeliveryItem.model_validate(out)
    assert parsed.model_dump(mode="json") == out
    assert (out["type"], out["reminder_id"], out["reminder_kind"], out["audience"]) == (
        "cycle_reminder",
        4,
        "goal_due",
        "specialist",
    )
    assert out["due"] == "2026-12-31" and out["quarter"] == "2026Q4"
    for other in (DeliveryItem, IncidentDeliveryItem):
        with pytest.raises(ValueError):
            other.model_validate(out)
