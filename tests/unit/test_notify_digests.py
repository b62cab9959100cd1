"""Team digest notices: the webhook body, golden texts in both languages, every channel kind
within its size limits, hostile and CJK names, keys and the delivery-log item."""

from __future__ import annotations

import datetime as dt
import json
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notify.channels import (
    DINGTALK_MAX_BYTES,
    WECOM_MAX_BYTES,
    DingTalkChannel,
    EmailChannel,
    FeishuChannel,
    OutgoingRequest,
    SlackChannel,
    WebhookChannel,
    WeComChannel,
    build_digest_delivery,
    make_digest_payload,
)
from services.notify.digest_messages import LIST_MAX, NAME_MAX, cut, format_change
from services.notify.handlers.deliveries import _item_out
from services.notify.handlers.digests import digest_delivery_key
from services.notify.handlers.reminders import reminder_delivery_key
from services.scoring.digests.build import MemberSums, UnclosedPlan, build_digest
from services.scoring.digests.periods import parse_period
from services.scoring.kpi.lines import DEFAULT_LINES
from shared.digests import Digest
from shared.notify_api import DeliveryItem, DigestDeliveryItem, ReminderDeliveryItem
from shared.webhooks import (
    AlertPayload,
    DigestContent,
    DigestOpenAlert,
    DigestPayload,
    is_digest,
    is_incident,
    is_reminder,
    verify_webhook_signature,
)

T0 = dt.datetime(2026, 12, 7, 0, 0, tzinfo=dt.UTC)  # Monday 08:00 in Shanghai
SECRET = "digest-secret"
KEY = "3b0c1d7e-0000-5000-8000-000000000001"
LINK = "https://kpi.example.com/v1/teams/north/kpis"
W49 = parse_period("2026-W49")


def csat(satisfied: int, surveys: int) -> dict[str, tuple[float, int]]:
    return {"customer_satisfaction": (float(satisfied), surveys)}


def content(
    names: tuple[str | None, str | None] = ("Li Wei", "王芳"), team: str = "North"
) -> DigestContent:
    return build_digest(
        team_id="north",
        team_name=team,
        timezone="Asia/Shanghai",
        period=W49,
        members=[
            MemberSums(
                "s1",
                names[0],
                now={**csat(7, 10), "avg_response_time_hours": (130.0, 10)},
                before={**csat(9, 10), "avg_response_time_hours": (115.0, 10)},
            ),
            MemberSums("s2", names[1], now=csat(10, 10), before=csat(5, 10)),
        ],
        plans=[
            UnclosedPlan(
                "s2",
                names[1],
                "2026Q4",
                "open",
                (("customer_satisfaction", 0.9, dt.date(2026, 12, 6)),),
            )
        ],
        lines=DEFAULT_LINES,
    )


ALERT = DigestOpenAlert(
    alert_id="a-1",
    specialist_id="s1",
    name="Li Wei",
    kpi="customer_satisfaction",
    value=0.7,
    qualified=0.85,
    started_at=dt.datetime(2026, 12, 3, 9, tzinfo=dt.timezone(dt.timedelta(hours=8))),
)


def digest(c: DigestContent | None = None) -> Digest:
    c = c or content()
    return Digest(
        id=7,
        team_id=c.team_id,
        period=c.period.name,
        content=c,
        created_at=T0,
        relayed_at=None,
        requested_by=None,
    )


def payload(lang: str = "en", c: DigestContent | None = None, alerts: int = 1) -> DigestPayload:
    return make_digest_payload(digest(c), [ALERT] * min(alerts, 50), alerts, lang=lang, link=LINK)


def test_the_webhook_body_is_the_documented_one() -> None:
    p = payload()
    body = json.loads(p.to_json())
    assert body["type"] == "team_digest" and body["kind"] == "digest"
    assert body["digest_id"] == 7 and body["team_id"] == "north" and body["team_name"] == "North"
    assert body["period"] == {
        "name": "2026-W49",
        "kind": "week",
        "start": "2026-11-30",
        "end": "2026-12-06",
    }
    assert body["previous"]["name"] == "2026-W48"
    assert body["created_at"] == "2026-12-07T00:00:00Z"
    assert body["open_alerts"][0]["started_at"] == "2026-12-03T01:00:00Z"
    assert body["open_alerts_total"] == 1
    assert [c["direction"] for c in body["crossed"]] == ["fell_below", "recovered"]
    assert body["plans_due"][0]["goals"] == [
        {"kpi": "customer_satisfaction", "target": 0.9, "due": "2026-12-06", "overdue": True}
    ]
    assert set(body) == set(DigestPayload.model_fields)
    # It reads back as itself (the sender rebuilds it from the outbox row) and is told apart.
    assert DigestPayload.model_validate(p.to_json_dict()) == p
    assert is_digest(body) and not is_incident(body) and not is_reminder(body)
    # The alert body of SPEC §4 is untouched: it has no type and no kind.
    assert "type" not in AlertPayload.model_fields and "kind" not in AlertPayload.model_fields


def test_texts_in_both_languages() -> None:
    en = payload("en").message
    assert en.splitlines()[0] == "[WEEKLY DIGEST] North (north) · 2026-W49"
    assert "Period: 2026-W49 (2026-11-30 – 2026-12-06)" in en
    assert "Compared with: 2026-W48 (2026-11-23 – 2026-11-29)" in en
    assert "Customer satisfaction (CSAT): 85% (prev 70%, +15.0 pt), 20 samples" in en
    assert "Average response time: 13.0 h (prev 11.5 h, +1.5 h), 10 samples" in en
    assert (
        "Crossed the qualified line: Li Wei (s1) · Customer satisfaction (CSAT) fell below the "
        "line: 90% → 70%; 王芳 (s2) · Customer satisfaction (CSAT) back at the line: 50% → 100%"
    ) in en
    assert (
        "Improvement plans due: 王芳 (s2) 2026Q4: Customer satisfaction (CSAT) ≥ 90% "
        "(overdue, 2026-12-06)" in en
    )
    assert "Open alerts: Li Wei (s1) · Customer satisfaction (CSAT) 70% (≥ 85%)" in en
    assert en.endswith(f"Details: {LINK}")
    zh = payload("zh-CN").message
    assert zh.splitlines()[0] == "[团队周报] North (north) · 2026-W49"
    assert "客户满意度：85%（上期 70%，+15.0 个百分点），样本 20" in zh
    assert (
        "越过合格线：Li Wei (s1) · 客户满意度 跌破合格线：90% → 70%；"
        "王芳 (s2) · 客户满意度 恢复至合格线" in zh
    )
    assert "未关闭的告警：Li Wei (s1)" in zh
    monthly = content().model_copy(
        update={"period": content().period.model_copy(update={"kind": "month", "name": "2026-12"})}
    )
    assert payload("zh-CN", monthly).message.startswith("[团队月报] North (north) · 2026-12")
    assert payload("en", monthly).message.startswith("[MONTHLY DIGEST]")


def test_nothing_to_report_reads_none() -> None:
    quiet = content().model_copy(update={"crossed": [], "plans_due": []})
    en = make_digest_payload(digest(quiet), [], 0, lang="en", link=None).message
    assert "Crossed the qualified line: none" in en
    assert "Improvement plans due: none" in en and "Open alerts: none" in en
    assert "Details" not in en


def test_long_lists_are_cut_with_a_count() -> None:
    en = payload(alerts=75).message
    line = next(x for x in en.splitlines() if x.startswith("Open alerts:"))
    assert line.count("Li Wei (s1)") == LIST_MAX
    assert line.endswith("… and 65 more")


@pytest.mark.parametrize(
    ("kpi", "change", "lang", "text"),
    [
        ("customer_satisfaction", 0.031, "en", "+3.1 pt"),
        ("customer_satisfaction", -0.25, "zh-CN", "-25.0 个百分点"),
        ("avg_response_time_hours", -2.25, "en", "-2.2 h"),
        ("avg_response_time_hours", 1.0, "zh-CN", "+1.0 小时"),
        ("training_sessions", 2.0, "en", "+2"),
        ("nps", -12.5, "en", "-12.5"),
        ("nps", None, "en", "—"),
    ],
)
def test_changes_in_each_unit(kpi: str, change: float | None, lang: str, text: str) -> None:
    assert format_change(kpi, change, lang) == text


HOSTILE = "Eve\r\n*[x](http://evil)*<b>\x00\x1b" + "长" * 300


def channels() -> list[object]:
    return [
        WebhookChannel("c-web", "https://hooks.example.com/kpi", SECRET),
        DingTalkChannel("c-ding", "https://oapi.dingtalk.com/robot/send?access_token=t", "SEC1"),
        WeComChannel("c-wecom", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"),
        FeishuChannel("c-feishu", "https://open.feishu.cn/open-apis/bot/v2/hook/x", "s"),
        FeishuChannel(
            "c-feishu-text", "https://open.feishu.cn/open-apis/bot/v2/hook/y", card=False
        ),
        SlackChannel("c-slack", "https://hooks.slack.com/services/T/B/X"),
        EmailChannel("c-mail", "kpi@example.com", ("lead@example.com",)),
    ]


def deliver(p: DigestPayload, lang: str) -> dict[str, OutgoingRequest | EmailMessage]:
    return {
        ch.id: build_digest_delivery(  # type: ignore[attr-defined]
            ch,  # type: ignore[arg-type]
            p,
            lang=lang,
            link=LINK,
            now=T0,
            delivery_key=KEY,
        )
        for ch in channels()
    }


def check_limits(out: dict[str, OutgoingRequest | EmailMessage], p: DigestPayload) -> None:
    web = out["c-web"]
    assert isinstance(web, OutgoingRequest)
    assert web.body == p.to_json()
    assert verify_webhook_signature(SECRET, web.body, web.headers["X-KPI-Signature"])
    assert web.headers["X-KPI-Delivery"] == KEY
    ding = out["c-ding"]
    assert isinstance(ding, OutgoingRequest) and "sign=" in ding.url
    assert len(json.loads(ding.body)["markdown"]["text"].encode()) <= DINGTALK_MAX_BYTES
    wecom = out["c-wecom"]
    assert isinstance(wecom, OutgoingRequest)
    assert len(json.loads(wecom.body)["markdown"]["content"].encode()) <= WECOM_MAX_BYTES
    slack = json.loads(out["c-slack"].body)  # type: ignore[union-attr]
    assert len(slack["blocks"][0]["text"]["text"]) <= 150
    assert len(slack["blocks"][1]["text"]["text"]) <= 3000
    feishu = json.loads(out["c-feishu"].body)  # type: ignore[union-attr]
    assert feishu["msg_type"] == "interactive" and feishu["card"]["header"]["template"] == "orange"
    assert json.loads(out["c-feishu-text"].body)["msg_type"] == "text"  # type: ignore[union-attr]
    mail = out["c-mail"]
    assert isinstance(mail, EmailMessage)
    assert "\n" not in str(mail["Subject"]) and "\r" not in str(mail["Subject"])
    assert mail["To"] == "lead@example.com" and mail["X-KPI-Delivery"] == KEY


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_every_channel_kind_gets_the_digest(lang: str) -> None:
    p = payload(lang)
    out = deliver(p, lang)
    check_limits(out, p)
    ding = json.loads(out["c-ding"].body)  # type: ignore[union-attr]
    title = "[WEEKLY DIGEST]" if lang == "en" else "[团队周报]"
    assert ding["markdown"]["title"].startswith(title)
    escaped = title.replace("[", "\\[").replace("]", "\\]")
    assert ding["markdown"]["text"].startswith(f"### {escaped}")
    mail = out["c-mail"]
    assert isinstance(mail, EmailMessage)
    assert str(mail["Subject"]).startswith(title)
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<table>" in html and f'href="{LINK}"' in html


def test_hostile_and_very_long_names_are_cleaned_cut_and_escaped() -> None:
    c = content(names=(HOSTILE, "王" * 500), team=HOSTILE)
    for lang in ("en", "zh-CN"):
        p = make_digest_payload(
            digest(c), [ALERT.model_copy(update={"name": HOSTILE})] * 50, 900, lang=lang, link=LINK
        )
        # The body keeps the names as given (receivers get the data); the texts cut them.
        assert p.team_name == HOSTILE
        first = p.message.splitlines()[0]
        assert "\r" not in p.message and "\x00" not in p.message and "\x1b" not in p.message
        assert len(first) < 120
        assert "王" * NAME_MAX not in p.message and "王" * (NAME_MAX - 1) + "…" in p.message
        out = deliver(p, lang)
        check_limits(out, p)
        ding = json.loads(out["c-ding"].body)["markdown"]["text"]  # type: ignore[union-attr]
        # Markdown in a name stays text: escaped brackets and emphasis, no raw HTML.
        assert "[x](http" not in ding and "\\[x\\](http://evil)" in ding and "<b>" not in ding
        slack = json.loads(out["c-slack"].body)["blocks"][1]["text"]["text"]  # type: ignore[union-attr]
        assert "<b>" not in slack and "&lt;b&gt;" in slack
        html = out["c-mail"].get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert "<b>" not in html.replace("<body>", "")


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=300), st.text(max_size=300))
def test_any_name_renders_within_every_limit(team: str, name: str) -> None:
    c = content(names=(name or None, name or None), team=team or "t")
    p = make_digest_payload(
        digest(c),
        [ALERT.model_copy(update={"name": name or None})] * 12,
        12,
        lang="zh-CN",
        link=LINK,
    )
    check_limits(deliver(p, "zh-CN"), p)


def test_cut() -> None:
    assert cut("a\nb\tc") == "a b c"
    assert cut("x" * 41) == "x" * 39 + "…"
    assert cut("x" * 40) == "x" * 40


def test_delivery_keys_per_digest_and_channel() -> None:
    keys = {digest_delivery_key(d, c) for d in (1, 2) for c in ("a", "b")}
    assert len(keys) == 4
    assert digest_delivery_key(1, "a") == digest_delivery_key(1, "a")
    assert digest_delivery_key(1, "a") != reminder_delivery_key(1, "supervisor", "a")


def test_the_delivery_log_names_the_digest() -> None:
    item = {"payload": payload().to_json_dict(), "kind": "digest", "link": LINK}
    out = _item_out(item)
    assert out == {
        "type": "team_digest",
        "digest_id": 7,
        "kind": "digest",
        "team_id": "north",
        "period": "2026-W49",
        "open_alerts": 1,
    }
    DigestDeliveryItem.model_validate(out)
    with pytest.raises(ValueError):
        DeliveryItem.model_validate(out)
    with pytest.raises(ValueError):
        ReminderDeliveryItem.model_validate(out)
