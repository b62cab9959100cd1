"""Egress policy on real loopback receivers: refused when configured, refused when sent,
the checked address is the one connected to, and only status and a fixed reason are kept."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import socket
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.egress import EgressPolicy
from services.notify.transport import http_client
from tests.integration.notify_support import Receiver, Start, snapshot
from tests.integration.test_notify_pipeline import RunningSender, add_channel, cfg, feed, scalar
from tests.integration.test_notify_receivers import _Inbox
from tests.kafka_helpers import wait_for
from tests.service_helpers import ADMIN_TOKEN, worker_port

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
LOOPBACK_DENIED = "denied by egress policy: loopback"
OWN_ENDPOINT = "denied by egress policy: the platform's own endpoint"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


def _post(url: str, config: dict[str, Any], kind: str = "webhook") -> httpx.Response:
    body = {"name": "target", "kind": kind, "config": config}
    return httpx.post(url + "/v1/channels", headers=ADMIN, json=body, timeout=10)


def _refused(resp: httpx.Response, field: str, reason: str) -> None:
    assert resp.status_code == 422, resp.text
    assert resp.json()["errors"] == [
        {
            "loc": ["body", "config", field],
            "field": f"config.{field}",
            "msg": reason,
            "type": "value_error",
        }
    ]


def _hook(url: str) -> dict[str, Any]:
    return {"url": url, "secret": "egress-secret"}


async def test_loopback_link_local_and_platform_targets_are_refused_when_configured(
    sessionmaker: async_sessionmaker[AsyncSession],
    notify_env: dict[str, str],
    start_notify: Start,
    receiver: Receiver,
    database_url: str,
) -> None:
    port = receiver.port
    denied = start_notify({**notify_env, "KPI_NOTIFY_ALLOW_PRIVATE_TARGETS": "false"})
    db_host = urllib.parse.urlsplit(database_url).hostname
    cases = [
        (f"http://127.0.0.1:{port}/hook", LOOPBACK_DENIED),
        (f"http://localhost:{port}/hook", LOOPBACK_DENIED),
        (f"http://[::1]:{port}/hook", LOOPBACK_DENIED),
        (f"http://[::ffff:127.0.0.1]:{port}/hook", LOOPBACK_DENIED),
        (f"http://0x7f.1:{port}/hook", LOOPBACK_DENIED),
        ("http://169.254.169.254/latest/meta-data/", "denied by egress policy: link-local"),
        ("http://10.1.2.3/hook", "denied by egress policy: private"),
        ("http://100.64.0.1/hook", "denied by egress policy: carrier-grade NAT"),
        ("http://100.100.100.200/latest", "denied by egress policy: cloud metadata service"),
        ("http://0.0.0.0:8003/v1/channels", "denied by egress policy: unspecified"),
    ]
    for url, reason in cases:
        _refused(await asyncio.to_thread(_post, denied.url, _hook(url)), "url", reason)
    mail = {"sender": "kpi@example.com", "recipients": ["a@example.com"], "port": 2525}
    _refused(await asyncio.to_thread(_post, denied.url, mail, "email"), "host", LOOPBACK_DENIED)
    ok = await asyncio.to_thread(_post, denied.url, _hook("https://hooks.example.com/kpi"))
    assert ok.status_code == 201, ok.text

    # Private targets allowed (as every local test does): the receiver is fine, the
    # platform's own endpoints and the metadata address still are not.
    allowed = start_notify(notify_env)
    good = await asyncio.to_thread(_post, allowed.url, _hook(f"http://127.0.0.1:{port}/h"))
    assert good.status_code == 201, good.text
    db_port = urllib.parse.urlsplit(database_url).port
    for url, reason in [
        (f"http://{db_host}:{db_port}/", OWN_ENDPOINT),
        (f"http://localhost:{allowed.port}/v1/channels", OWN_ENDPOINT),
        ("http://169.254.169.254/latest/meta-data/", "denied by egress policy: link-local"),
    ]:
        _refused(await asyncio.to_thread(_post, allowed.url, _hook(url)), "url", reason)
    # A login without TLS is refused at configuration time too.
    login = {**mail, "host": "smtp.example.com", "username": "u", "password": "p"}
    resp = await asyncio.to_thread(_post, allowed.url, login, "email")
    assert resp.status_code == 422 and resp.json()["errors"][0]["loc"] == [
        "body",
        "config",
        "starttls",
    ]
    assert not receiver.snapshot()
    assert await scalar(sessionmaker, "SELECT count(*) FROM channels") == 2


async def _deliveries(sm: async_sessionmaker[AsyncSession]) -> list[dict[str, Any]]:
    from sqlalchemy import text

    async with sm() as s:
        rows = await s.execute(
            text(
                "SELECT d.channel_id, d.status, d.attempts, d.next_attempt_at, d.last_error, "
                "a.outcome, a.error, a.http_status FROM deliveries d "
                "LEFT JOIN delivery_attempts a ON a.delivery_id = d.id ORDER BY d.channel_id"
            )
        )
        return [dict(r._mapping) for r in rows]


async def test_a_name_resolving_to_loopback_is_refused_at_send_time(
    sessionmaker: async_sessionmaker[AsyncSession], receiver: Receiver
) -> None:
    # Stored before the policy existed (or a name whose DNS answer changed since): the
    # sender checks what the host resolves to and contacts nothing refused.
    inbox = _Inbox()
    smtp_port = worker_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        await add_channel(sessionmaker, f"http://localhost:{receiver.port}/hook", cid="name")
        await add_channel(sessionmaker, f"http://127.0.0.1:{receiver.port}/hook", cid="ip")
        mail = {"sender": "k@example.com", "recipients": ["a@example.com"], "port": smtp_port}
        await add_channel(sessionmaker, "", cid="mail", kind="email", config=mail)
        c = dataclasses.replace(cfg(), egress=EgressPolicy())  # the default: policy on
        assert await feed(sessionmaker, c, T0, snapshot("amy", T0, csat=0.5)) == 3
        async with RunningSender(sessionmaker, c, lambda: dt.datetime.now(dt.UTC)):

            async def settled() -> bool:
                rows = await _deliveries(sessionmaker)
                return len(rows) == 3 and all(r["status"] == "failed" for r in rows)

            await _wait_async(settled, 15)
        rows = await _deliveries(sessionmaker)
        for row in rows:
            # One attempt, recorded with the reason, and no retry scheduled: a refusal is
            # permanent until an admin changes the channel and resends.
            assert row["attempts"] == 1 and row["outcome"] == "failed", row
            assert row["last_error"] == row["error"] == LOOPBACK_DENIED, row
            assert row["http_status"] is None
        assert receiver.snapshot() == [] and inbox.messages == []
    finally:
        controller.stop()


async def _wait_async(check: Any, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_the_connection_goes_to_the_address_that_was_checked(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rebinding name: its first answer passes the check, its next one is the receiver.
    # Resolving a second time to connect would reach the receiver; the sender resolves once
    # and connects to the address it checked (here ::1, where nothing listens).
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    answers: list[str] = ["::1", "127.0.0.1"]
    asked: list[str] = []

    async def rebinding(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        # anyio asks with the IDNA-encoded bytes of a name, the policy with its text.
        name = host.decode() if isinstance(host, bytes) else host
        if name != "rebind.test":
            return await real(host, port, *args, **kw)
        asked.append(name)
        address = answers.pop(0) if len(answers) > 1 else answers[0]
        if ":" in address:
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(loop, "getaddrinfo", rebinding)
    policy = EgressPolicy(allow_private=True)
    async with http_client(policy, 5) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post(f"http://rebind.test:{receiver.port}/hook", content=b"{}")
    assert asked == ["rebind.test"] and receiver.snapshot() == []

    # Now the name answers the receiver's address: reached there, its Host header intact.
    async with http_client(policy, 5) as client:
        resp = await client.post(f"http://rebind.test:{receiver.port}/hook", content=b"{}")
    assert resp.status_code == 200
    (req,) = receiver.snapshot()
    assert req.headers["Host"] == f"rebind.test:{receiver.port}"


async def test_only_the_status_and_a_fixed_reason_are_stored(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    secret_body = b"stack trace: password=hunter2 at db.internal:5432"
    robot_body = b'{"errcode": 310000, "errmsg": "token hunter2 invalid"}'
    http = Receiver(behaviour=lambda req: (500, secret_body, 0.0)).start()
    robot = Receiver(behaviour=lambda req: (200, robot_body, 0.0)).start()
    try:
        await add_channel(sessionmaker, http.url + "/hook", cid="http")
        await add_channel(
            sessionmaker, "", cid="robot", kind="wecom", config={"url": robot.url + "/r?key=K"}
        )
        c = cfg()
        await feed(sessionmaker, c, T0, snapshot("bob", T0, csat=0.5))
        async with RunningSender(sessionmaker, c, lambda: dt.datetime.now(dt.UTC)):
            await wait_for(lambda: http.snapshot() and robot.snapshot(), 10)

            async def recorded() -> bool:
                rows = await _deliveries(sessionmaker)
                return len(rows) >= 2 and all(r["error"] for r in rows)

            await _wait_async(recorded, 10)
        rows = await _deliveries(sessionmaker)
        errors = {(r["channel_id"], r["last_error"], r["error"]) for r in rows}
        assert errors == {
            ("http", "HTTP 500", "HTTP 500"),
            ("robot", "receiver error code 310000", "receiver error code 310000"),
        }
    finally:
        http.stop()
        robot.stop()
