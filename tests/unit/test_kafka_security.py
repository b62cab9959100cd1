"""KPI_KAFKA_* security settings, the client options they become, and that all clients get them."""

from __future__ import annotations

import ast
import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.kafka_clients import create_admin, create_client, security_options
from shared.kafka_settings import MECHANISMS, PROTOCOLS, KafkaSecurity
from shared.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
CA = str(Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"))


def _error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    return str(err.value)


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_without_credentials_names_the_variables(
    monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    text = _error(monkeypatch, KPI_KAFKA_SECURITY_PROTOCOL=protocol)
    why = f"is required when KPI_KAFKA_SECURITY_PROTOCOL is {protocol}"
    assert f"KPI_KAFKA_SASL_USERNAME: Value error, {why}" in text
    assert "KPI_KAFKA_SASL_PASSWORD: Value error, is required" in text


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KPI_KAFKA_SECURITY_PROTOCOL": "TLS"}, "KPI_KAFKA_SECURITY_PROTOCOL"),
        ({"KPI_KAFKA_SASL_MECHANISM": "GSSAPI"}, "KPI_KAFKA_SASL_MECHANISM"),
        ({"KPI_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "KPI_KAFKA_SSL_CAFILE"),
        ({"KPI_KAFKA_SSL_CERTFILE": CA}, "KPI_KAFKA_SSL_KEYFILE"),
        ({"KPI_KAFKA_SSL_KEYFILE": "/nonexistent/key.pem"}, "KPI_KAFKA_SSL_KEYFILE"),
        ({"KPI_KAFKA_SSL_CHECK_HOSTNAME": "perhaps"}, "KPI_KAFKA_SSL_CHECK_HOSTNAME"),
    ],
)
def test_bad_security_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    assert f"  {named}: " in _error(monkeypatch, **env)


def test_the_password_never_appears_in_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KPI_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KPI_KAFKA_SASL_USERNAME", "kpi")
    monkeypatch.setenv("KPI_KAFKA_SASL_PASSWORD", "hunter2-secret")
    loaded = load_settings()
    assert "hunter2-secret" not in repr(loaded) + str(loaded) + repr(loaded.kafka_security)
    assert security_options(loaded.kafka_security)["sasl_plain_password"] == "hunter2-secret"


def test_defaults_are_plaintext_with_hostname_checks_on() -> None:
    security = load_settings().kafka_security
    assert security.protocol == "PLAINTEXT" and security.ssl_check_hostname
    assert security_options(security) == {"security_protocol": "PLAINTEXT"}


@settings(max_examples=30, deadline=None)
@given(
    protocol=st.sampled_from(PROTOCOLS),
    mechanism=st.sampled_from(MECHANISMS),
    username=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1)
    .map(str.strip)
    .filter(bool),
    password=st.text(min_size=1).filter(lambda p: "\x00" not in p),
    cafile=st.sampled_from([None, CA]),
    check_hostname=st.booleans(),
)
def test_every_combination_reaches_each_kind_of_client(
    protocol: str,
    mechanism: str,
    username: str,
    password: str,
    cafile: str | None,
    check_hostname: bool,
) -> None:
    security = load_settings(
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username=username,
        kafka_sasl_password=password,
        kafka_ssl_cafile=cafile,
        kafka_ssl_check_hostname=check_hostname,
    ).kafka_security
    options = security_options(security)
    assert options["security_protocol"] == protocol
    sasl = protocol.startswith("SASL_")
    assert ("sasl_mechanism" in options) is sasl
    if sasl:
        assert options["sasl_mechanism"] == mechanism
        assert options["sasl_plain_username"] == username
        assert options["sasl_plain_password"] == password
    context = options.get("ssl_context")
    assert (context is not None) is protocol.endswith("SSL")
    if context is not None:
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname is check_hostname
    # The admin and metadata clients receive the same options as producers and consumers.
    for client in asyncio.run(_clients(security)):
        assert client._security_protocol == protocol
        assert (client._ssl_context is None) is (context is None)
        if context is not None:
            assert client._ssl_context.check_hostname is check_hostname
        if sasl:
            assert (client._sasl_mechanism, client._sasl_plain_username) == (mechanism, username)


async def _clients(security: KafkaSecurity) -> list[Any]:
    # aiokafka clients need a running loop to be constructed (none is started here).
    return [
        create_admin("h:1", client_id="t", security=security)._client,
        create_client("h:1", client_id="t", security=security),
    ]


# Calls that open Kafka connections; each must be handed the security settings.
_NEEDS_SECURITY = {
    "create_producer", "create_consumer", "create_admin", "create_client", "ensure_topics",
    "broker_ping", "AnchorCheck", "replay_deadletter", "replay",
}  # fmt: skip
_RAW_CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "AIOKafkaClient"}


def _calls() -> list[tuple[str, str, ast.Call]]:
    found = []
    for package in ("shared", "services", "kpi"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call):
                    func = node.func
                    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                    found.append((str(path.relative_to(ROOT)), name, node))
    return found


def test_only_the_factory_module_builds_kafka_clients() -> None:
    raw = [f"{path}:{call.lineno} {name}" for path, name, call in _calls() if name in _RAW_CLIENTS]
    assert all(line.startswith("shared/kafka_clients.py:") for line in raw), raw


def test_every_connection_is_given_the_security_settings() -> None:
    missing = [
        f"{path}:{call.lineno} {name}(...)"
        for path, name, call in _calls()
        if name in _NEEDS_SECURITY
        and path != "shared/kafka_clients.py"
        and not any(k.arg in ("security", None) for k in call.keywords)
    ]
    assert missing == []
