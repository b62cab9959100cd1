"""Channel sends on the wire: connections only to addresses the egress policy checked.

HTTP: httpx's pool gets a network backend that resolves the host once, checks every
address, and connects to a checked address itself; httpcore still sends the URL's host in
`Host` and as TLS SNI and verifies the certificate against it, so there is no window in
which a second DNS answer (rebinding) picks the address. SMTP: the same for smtplib's
socket, STARTTLS verified with the default context (or KPI_NOTIFY_SMTP_CA_FILE).
"""

from __future__ import annotations

import asyncio
import errno
import smtplib
import socket
import ssl
from collections.abc import Iterable
from email.message import EmailMessage
from typing import Any

import httpcore
import httpx

from services.notify.channels import EmailChannel
from services.notify.config import SmtpPolicy
from services.notify.egress import EgressDenied, EgressPolicy, Refused
from shared.settings import SettingsError

PLAINTEXT_LOGIN = (
    "SMTP login without TLS refused (set starttls, or KPI_NOTIFY_SMTP_ALLOW_PLAINTEXT_LOGIN)"
)


def _addresses(infos: Iterable[tuple[Any, ...]]) -> list[str]:
    return [str(info[4][0]) for info in infos]


async def resolve_checked(policy: EgressPolicy, host: str, port: int) -> list[str]:
    """The addresses of `host` the policy allows, in resolver order (EgressDenied if not)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return policy.check_resolved(host, port, _addresses(infos))


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend that connects only to addresses the policy allowed."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await asyncio.wait_for(resolve_checked(self._policy, host, port), timeout)
        except TimeoutError:
            raise httpcore.ConnectTimeout("name resolution timed out") from None
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise EgressDenied("unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _CheckedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: EgressPolicy) -> None:
        super().__init__(trust_env=False)
        # httpx takes no network backend, so its (still unused) pool is replaced by one with
        # ours; the same settings as httpx's default transport otherwise.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=CheckedBackend(policy),
        )


def http_client(policy: EgressPolicy, timeout: float) -> httpx.AsyncClient:
    """The sender's client: no proxies from the environment (the policy checks what is
    connected to), no redirects (a 3xx to elsewhere is a failed send), checked connections."""
    return httpx.AsyncClient(
        transport=_CheckedTransport(policy),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )


def smtp_tls_context(policy: SmtpPolicy) -> ssl.SSLContext:
    """Certificate and host name verified; the CA file, when set, instead of the system's."""
    try:
        return ssl.create_default_context(cafile=policy.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(
            f"KPI_NOTIFY_SMTP_CA_FILE: cannot load {policy.ca_file!r}: {exc}"
        ) from None


class _CheckedSMTP(smtplib.SMTP):
    """smtplib's client with its socket opened to a checked address; STARTTLS still checks
    the certificate against the configured host name (smtplib keeps it in `_host`)."""

    def __init__(self, policy: EgressPolicy, host: str, port: int, timeout: float) -> None:
        self._policy = policy
        super().__init__(host, port, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        last: OSError | None = None
        for address in self._policy.check_resolved(host, port, _addresses(infos)):
            try:
                return socket.create_connection((address, port), timeout, self.source_address)
            except OSError as exc:
                last = exc
        assert last is not None
        raise last


def send_mail(
    channel: EmailChannel,
    msg: EmailMessage,
    *,
    timeout: float,
    egress: EgressPolicy,
    smtp: SmtpPolicy,
    tls: ssl.SSLContext,
) -> None:
    """Send one mail (blocking: run it in a thread); Refused before connecting if not allowed."""
    login = bool(channel.username and channel.password)
    if login and not channel.starttls and not smtp.allow_plaintext_login:
        raise Refused(PLAINTEXT_LOGIN)
    with _CheckedSMTP(egress, channel.host, channel.port, timeout) as client:
        if channel.starttls:
            client.starttls(context=tls)
        if login:
            assert channel.username is not None and channel.password is not None
            client.login(channel.username, channel.password)
        client.send_message(msg)


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(out) < 10 and current not in out:
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


_HTTPX_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (httpx.ConnectTimeout, "connect timeout"),
    (httpx.ReadTimeout, "read timeout"),
    (httpx.WriteTimeout, "write timeout"),
    (httpx.TimeoutException, "timed out"),
    (httpx.ConnectError, "connect failed"),
    (httpx.RemoteProtocolError, "protocol error"),
    (httpx.NetworkError, "connection error"),
    (httpx.ProtocolError, "protocol error"),
    (httpx.HTTPError, "HTTP client error"),
)


def describe_failure(exc: BaseException) -> tuple[str, bool]:
    """(reason, permanent) of a failed send: fixed wording, never the exception's text.

    Exception texts carry what the target answered (an SMTP server's reply) or the URL
    with its token; supervisors read the reason, so it is built from types and codes only.
    """
    chain = _chain(exc)
    for e in chain:
        if isinstance(e, Refused):
            return e.reason, True
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            return "TLS certificate verification failed", False
        if isinstance(e, socket.gaierror):
            return "name resolution failed", False
        if isinstance(e, ConnectionRefusedError):
            return "connection refused", False
    for e in chain:
        if isinstance(e, ssl.SSLError):
            return "TLS error", False
    if isinstance(exc, smtplib.SMTPException):
        return _smtp_reason(exc), False
    for kind, reason in _HTTPX_REASONS:
        if isinstance(exc, kind):
            return reason, False
    if isinstance(exc, TimeoutError):
        return "timed out", False
    code = exc.errno if isinstance(exc, OSError) else None
    if code is not None and code in errno.errorcode:
        return f"connection error ({errno.errorcode[code]})", False
    return f"error ({type(exc).__name__})", False


def _smtp_reason(exc: smtplib.SMTPException) -> str:
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return "SMTP extension (STARTTLS or AUTH) not offered by the server"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return "SMTP server disconnected"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted({code for code, _ in exc.recipients.values()})
        return f"SMTP recipients refused ({', '.join(str(c) for c in codes)})"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"SMTP authentication failed ({exc.smtp_code})"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"SMTP {exc.smtp_code}"
    return "SMTP error"
