"""The admin screens' server routes on real processes: a channel's "send test" (notify, and
through scoring's proxy) against real receivers, and the unmapped agents relayed from ingest."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kpi.stack import ServiceProcess
from shared.auth import Role
from shared.topics import Topics
from shared.webhooks import verify_webhook_signature
from tests.integration.notify_support import Receiver, Switch
from tests.integration.test_notify_receivers import _Inbox
from tests.integration.test_scoring_api import token
from tests.service_helpers import (
    ADMIN_TOKEN,
    service_env,
    start_service,
    wait_status,
    worker_port,
)

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SECRET = "admin-test-secret-5c1e"


@pytest.fixture
def stack(
    database_url: str, bootstrap: str, created_topics: Topics, tmp_path: Path
) -> Iterator[dict[str, ServiceProcess]]:
    """ingest, notify and scoring (proxying to both); private targets only as `localhost`."""
    env = service_env(
        database_url,
        bootstrap,
        KPI_TOPIC_PREFIX=created_topics.prefix,
        KPI_NOTIFY_ALLOWED_PRIVATE_HOSTS="localhost",
        KPI_NOTIFY_LANG="en",
    )
    procs: dict[str, ServiceProcess] = {}
    try:
        procs["ingest"] = start_service("ingest", env, tmp_path)
        procs["notify"] = start_service("notify", env, tmp_path)
        upstreams = {"KPI_NOTIFY_URL": procs["notify"].url, "KPI_INGEST_URL": procs["ingest"].url}
        procs["scoring"] = start_service("scoring", {**env, **upstreams}, tmp_path)
        for svc in procs.values():
            wait_status(svc.url + "/readyz", 200, 60)
        yield procs
    finally:
        for svc in procs.values():
            svc.stop()


def _channel(http: httpx.Client, url: str, kind: str, config: dict[str, Any]) -> str:
    body = {"name": f"ops {kind} «试»", "kind": kind, "lang": "zh-CN", "config": config}
    r = http.post(f"{url}/v1/channels", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_send_test_goes_through_the_real_channel_path_and_is_not_a_delivery(
    stack: dict[str, ServiceProcess], clean_db: AsyncEngine
) -> None:
    switch = Switch()
    receiver = Receiver(behaviour=switch).start()
    inbox = _Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=worker_port())
    smtp.start()
    try:
        await asyncio.to_thread(_send_tests, stack, receiver, switch, inbox, smtp.port)
        # Refused by the egress policy at send time: a 127.0.0.1 target stored before the
        # policy (configuring it now is a 422) is never connected to.
        cid = str(uuid.uuid4())
        async with clean_db.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO channels (id, name, kind, team_id, lang, enabled, config, "
                    "created_at, updated_at) VALUES (:id, 'old hook', 'webhook', NULL, NULL, "
                    "true, CAST(:cfg AS jsonb), now(), now())"
                ),
                {"id": cid, "cfg": orjson.dumps({"url": receiver.url, "secret": SECRET}).decode()},
            )
        seen = len(receiver.snapshot())
        r = await asyncio.to_thread(
            httpx.post, f"{stack['notify'].url}/v1/channels/{cid}/test", headers=ADMIN
        )
        assert r.status_code == 200, r.text
        got = r.json()
        assert (got["status"], got["error"], got["permanent"]) == (
            "failed",
            "denied by egress policy: loopback",
            True,
        )
        assert len(receiver.snapshot()) == seen
        logs = await asyncio.to_thread(Path(stack["notify"].log_path).read_text, errors="replace")
        assert SECRET not in logs and "Traceback" not in logs
        assert f"test test-{got['test_id']} by " in logs
    finally:
        smtp.stop()
        receiver.stop()


def _send_tests(
    stack: dict[str, ServiceProcess],
    receiver: Receiver,
    switch: Switch,
    inbox: _Inbox,
    smtp_port: int,
) -> None:
    notify, scoring = stack["notify"].url, stack["scoring"].url
    with httpx.Client(headers=ADMIN, timeout=30) as http:
        local = receiver.url.replace("127.0.0.1", "localhost")
        hook = _channel(http, notify, "webhook", {"url": local + "/hook", "secret": SECRET})
        # The receiver is down: the answer says so, with the status and a fixed reason.
        r = http.post(f"{scoring}/v1/dashboard/notify/channels/{hook}/test")
        assert r.status_code == 200, r.text
        failed = r.json()
        assert (failed["status"], failed["http_status"], failed["error"]) == (
            "failed",
            500,
            "HTTP 500",
        )
        assert failed["recorded"] is False and not failed["permanent"]
        switch.up = True
        r = http.post(f"{notify}/v1/channels/{hook}/test")
        sent = r.json()
        assert (sent["status"], sent["http_status"], sent["error"]) == ("sent", 200, None)
        assert sent["delivery_key"] == f"test-{sent['test_id']}"
        first, second = receiver.snapshot()
        assert first.path == "/hook"
        assert second.headers["X-KPI-Delivery"] == sent["delivery_key"]
        assert verify_webhook_signature(SECRET, second.body, second.headers["X-KPI-Signature"])
        body = second.json()
        assert body["type"] == "channel_test" and body["channel_id"] == hook
        assert body["requested_by"] == "bootstrap-admin"
        assert body["message"].startswith("[测试] 告警渠道测试 · ops webhook «试»")
        # Not a delivery: nothing queued, nothing listed, nothing to resend.
        assert http.get(f"{notify}/v1/deliveries").json()["items"] == []

        # A chat robot's own format: DingTalk markdown, the test marked in its title.
        robot = _channel(http, notify, "dingtalk", {"url": local + "/robot?access_token=T0K"})
        r = http.post(f"{scoring}/v1/dashboard/notify/channels/{robot}/test")
        assert r.json()["status"] == "sent", r.text
        ding = receiver.snapshot()[-1].json()
        assert ding["msgtype"] == "markdown" and "[测试]" in ding["markdown"]["title"]

        # Email: the same test as a mail, through the checked SMTP connection.
        mail = _channel(
            http,
            notify,
            "email",
            {"sender": "kpi@example.com", "recipients": ["lead@example.com"],
             "host": "localhost", "port": smtp_port},
        )  # fmt: skip
        r = http.post(f"{notify}/v1/channels/{mail}/test")
        assert r.json()["status"] == "sent" and r.json()["http_status"] is None, r.text
        (msg,) = inbox.messages
        assert str(msg["Subject"]).startswith("[测试]")
        assert msg["X-KPI-Delivery"] == r.json()["delivery_key"]

        # The channel screen's calls through the proxy; secrets never come back.
        listed = http.get(f"{scoring}/v1/dashboard/notify/channels").json()
        assert {c["id"] for c in listed} == {hook, robot, mail}
        assert SECRET not in str(listed) and "T0K" not in str(listed)
        one = http.get(f"{scoring}/v1/dashboard/notify/channels/{hook}").json()
        edited = {**one, "name": "renamed", "enabled": False}
        for key in ("id", "created_at", "updated_at"):
            edited.pop(key)
        r = http.put(f"{scoring}/v1/dashboard/notify/channels/{hook}", json=edited)
        assert r.status_code == 200 and r.json()["name"] == "renamed", r.text
        assert r.json()["config"]["secret"] == "***"
        # A disabled channel can still be tested, and the stored secret still signs.
        r = http.post(f"{scoring}/v1/dashboard/notify/channels/{hook}/test")
        assert r.json()["status"] == "sent"
        last = receiver.snapshot()[-1]
        assert verify_webhook_signature(SECRET, last.body, last.headers["X-KPI-Signature"])
        assert http.delete(f"{scoring}/v1/dashboard/notify/channels/{mail}").status_code == 204
        r = http.post(f"{scoring}/v1/dashboard/notify/channels/{mail}/test")
        assert r.status_code == 404
        r = http.get(f"{scoring}/v1/dashboard/notify/channels/{hook}/test")
        assert r.status_code == 404 and "not available through the dashboard" in r.text


async def test_only_admins_test_channels_and_read_unmapped_agents(
    stack: dict[str, ServiceProcess],
    clean_db: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    sup = await token(sessionmaker, Role.SUPERVISOR, "ann", ["north"])
    now = dt.datetime.now(dt.UTC)
    async with clean_db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO webhook_unmapped_agents (vendor, agent_id, email, name, counted_as, "
                "events, first_seen_at, last_seen_at) VALUES ('zendesk', '3612', "
                "'li.na@example.com', 'Li Na 李娜', 'zendesk:3612', 4, :t, :t)"
            ),
            {"t": now},
        )
    await asyncio.to_thread(_unmapped, stack, sup)


def _unmapped(stack: dict[str, ServiceProcess], sup: dict[str, str]) -> None:
    scoring, notify = stack["scoring"].url, stack["notify"].url
    url = f"{scoring}/v1/dashboard/ingest/webhooks/unmapped"
    r = httpx.get(url, headers=ADMIN)
    assert r.status_code == 200, r.text
    (agent,) = r.json()["agents"]
    assert (agent["vendor"], agent["agent_id"], agent["counted_as"]) == (
        "zendesk",
        "3612",
        "zendesk:3612",
    )
    assert "note" in r.json()
    assert httpx.get(url, headers=ADMIN, params={"vendor": "zammad"}).json()["agents"] == []
    assert httpx.get(url, headers=ADMIN, params={"vendor": "nope"}).status_code == 422
    assert httpx.get(url, headers=sup).status_code == 403
    assert httpx.get(url).status_code == 401
    # Mapped by its e-mail through the directory: no longer listed.
    r = httpx.put(
        f"{scoring}/v1/specialists/li.na",
        headers=ADMIN,
        json={"name": "Li Na", "aliases": {"email": "Li.Na@example.com"}},
    )
    assert r.status_code == 200, r.text
    assert httpx.get(url, headers=ADMIN).json()["agents"] == []
    r = httpx.post(f"{notify}/v1/channels/any/test", headers=sup)
    assert r.status_code == 403
    # ingest gone: a clear 503, not a hang or a 500.
    stack["ingest"].stop()
    r = httpx.get(url, headers=ADMIN, timeout=20)
    assert r.status_code == 503 and "unavailable" in r.text, r.text
    assert r.headers["retry-after"] == "5"
