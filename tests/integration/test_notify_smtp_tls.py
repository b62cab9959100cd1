"""Email channels against a real local SMTP server: STARTTLS certificates are verified, and
credentials never cross the network in clear unless a setting allows it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.config import SmtpPolicy
from services.notify.transport import PLAINTEXT_LOGIN
from tests.integration.notify_support import snapshot
from tests.integration.test_notify_egress import _deliveries, _wait_async
from tests.integration.test_notify_pipeline import RunningSender, add_channel, cfg, feed
from tests.integration.test_notify_receivers import _Inbox
from tests.service_helpers import worker_port

T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost (no CA anyone trusts by default)."""
    openssl = shutil.which("openssl")
    assert openssl, "the SMTP TLS tests need the openssl command"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class _Logins:
    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.seen.append((data.login.decode(), session.ssl is not None))
        return AuthResult(success=True)


@pytest.fixture
def smtp_server() -> Iterator[Any]:
    started: list[Controller] = []

    def start(**params: Any) -> tuple[int, _Inbox, _Logins]:
        inbox, logins, port = _Inbox(), _Logins(), worker_port()
        controller = Controller(
            inbox, hostname="127.0.0.1", port=port, authenticator=logins, **params
        )
        controller.start()
        started.append(controller)
        return port, inbox, logins

    yield start
    for controller in started:
        controller.stop()


def _mail(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "sender": "kpi@example.com",
        "recipients": ["lead@example.com"],
        "host": "localhost",
        "port": port,
        "username": "kpi-bot",
        "password": "smtp-password",
        **extra,
    }


async def test_starttls_verifies_the_server_certificate(
    sessionmaker: async_sessionmaker[AsyncSession],
    certificate: tuple[Path, Path],
    smtp_server: Any,
) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    port, inbox, logins = smtp_server(tls_context=server_tls, require_starttls=True)
    await add_channel(sessionmaker, "", cid="mail", kind="email", config=_mail(port, starttls=True))
    untrusted = cfg()  # the system's CAs: nobody vouches for this certificate
    await feed(sessionmaker, untrusted, T0, snapshot("amy", T0, csat=0.5))

    async def failed_once() -> bool:
        rows = await _deliveries(sessionmaker)
        return bool(rows) and rows[0]["error"] is not None

    async with RunningSender(sessionmaker, untrusted, lambda: dt.datetime.now(dt.UTC)):
        await _wait_async(failed_once, 15)
    (row, *_) = await _deliveries(sessionmaker)
    assert row["error"] == "TLS certificate verification failed"
    assert row["status"] == "pending"  # the server's certificate may be fixed: retried
    assert inbox.messages == [] and logins.seen == []

    # The same delivery, once the CA is trusted (KPI_NOTIFY_SMTP_CA_FILE): verified against
    # the configured host name although the socket was opened to the checked address.
    trusted = dataclasses.replace(cfg(), smtp=SmtpPolicy(ca_file=str(cert)))

    async def sent() -> bool:
        return bool((await _deliveries(sessionmaker))[-1]["status"] == "sent")

    async with RunningSender(sessionmaker, trusted, lambda: dt.datetime.now(dt.UTC)):
        await _wait_async(sent, 15)
    assert len(inbox.messages) == 1 and logins.seen == [("kpi-bot", True)]


async def test_login_without_tls_is_refused_unless_allowed(
    sessionmaker: async_sessionmaker[AsyncSession], smtp_server: Any
) -> None:
    # A server that offers AUTH in clear: the password would cross the network readable.
    port, inbox, logins = smtp_server(auth_require_tls=False)
    await add_channel(sessionmaker, "", cid="mail", kind="email", config=_mail(port))
    c = cfg()
    await feed(sessionmaker, c, T0, snapshot("amy", T0, csat=0.5))

    async def failed() -> bool:
        rows = await _deliveries(sessionmaker)
        return bool(rows) and rows[0]["status"] == "failed"

    async with RunningSender(sessionmaker, c, lambda: dt.datetime.now(dt.UTC)):
        await _wait_async(failed, 15)
    (row,) = await _deliveries(sessionmaker)
    assert row["attempts"] == 1 and row["last_error"] == PLAINTEXT_LOGIN
    assert inbox.messages == [] and logins.seen == []

    allowed = dataclasses.replace(c, smtp=SmtpPolicy(allow_plaintext_login=True))
    await feed(sessionmaker, allowed, T0, snapshot("bob", T0, csat=0.5))
    async with RunningSender(sessionmaker, allowed, lambda: dt.datetime.now(dt.UTC)):

        async def delivered() -> bool:
            return len(inbox.messages) == 1

        await _wait_async(delivered, 15)
    assert logins.seen == [("kpi-bot", False)]
