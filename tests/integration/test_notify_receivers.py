"""Every channel kind delivered by the real sender to a real local receiver (HTTP or SMTP)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.channels import dingtalk_sign, feishu_sign
from tests.integration.notify_support import Receiver, snapshot
from tests.integration.test_notify_pipeline import RunningSender, add_channel, cfg, feed
from tests.kafka_helpers import wait_for
from tests.service_helpers import worker_port

T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)


async def test_chat_robots_get_their_native_payloads(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    rec = Receiver().start()
    try:
        kinds: dict[str, dict[str, Any]] = {
            "dingtalk": {"url": rec.url + "/ding?access_token=T", "secret": "SECding"},
            "wecom": {"url": rec.url + "/wecom?key=K"},
            "feishu": {"url": rec.url + "/feishu/hook/ABC", "secret": "fs-secret", "card": True},
            "slack": {"url": rec.url + "/slack/T/B/C"},
        }
        for kind, conf in kinds.items():
            await add_channel(sessionmaker, "", cid=kind, kind=kind, config=conf)
        c = cfg()
        await feed(sessionmaker, c, T0, snapshot("amy", T0, csat=0.6))
        async with RunningSender(sessionmaker, c, lambda: dt.datetime.now(dt.UTC)):
            await wait_for(lambda: len(rec.snapshot()) == 4, 10)
        by_path = {r.path.split("?")[0].split("/")[1]: r for r in rec.snapshot()}
        ding = by_path["ding"]
        query = dict(p.split("=", 1) for p in ding.path.split("?")[1].split("&"))
        assert query["access_token"] == "T"
        assert query["sign"] == dingtalk_sign("SECding", int(query["timestamp"]))
        assert ding.json()["msgtype"] == "markdown"
        assert "amy" in ding.json()["markdown"]["text"] and "60" in ding.json()["markdown"]["text"]
        wecom = by_path["wecom"].json()
        assert (
            wecom["msgtype"] == "markdown"
            and "Customer satisfaction" in wecom["markdown"]["content"]
        )
        feishu = by_path["feishu"].json()
        assert feishu["msg_type"] == "interactive"
        assert feishu["sign"] == feishu_sign("fs-secret", int(feishu["timestamp"]))
        assert feishu["card"]["header"]["template"] == "red"
        slack = by_path["slack"].json()
        assert slack["blocks"][0]["type"] == "header" and "amy" in slack["text"]
        # Every robot request carries the idempotency key too.
        assert all(r.headers.get("X-KPI-Delivery") for r in rec.snapshot())
    finally:
        rec.stop()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        return "250 OK"


async def test_email_over_smtp_with_text_and_html(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    inbox = _Inbox()
    port = worker_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        await add_channel(
            sessionmaker,
            "",
            cid="mail",
            kind="email",
            config={
                "sender": "kpi@example.com",
                "recipients": ["lead@example.com"],
                "host": "127.0.0.1",
                "port": port,
            },
        )
        c = cfg()
        await feed(sessionmaker, c, T0, snapshot("<script>eve</script>", T0, csat=0.5))
        async with RunningSender(sessionmaker, c, lambda: dt.datetime.now(dt.UTC)):
            await wait_for(lambda: len(inbox.messages) == 1, 10)
        msg = inbox.messages[0]
        assert msg["To"] == "lead@example.com" and msg["X-KPI-Delivery"]
        plain = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        assert plain is not None and html is not None
        assert "<script>eve</script>" in plain.get_content()
        assert "<script>" not in html.get_content() and "&lt;script&gt;" in html.get_content()
    finally:
        controller.stop()
