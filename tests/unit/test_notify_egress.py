"""The egress policy of channel targets: ranges, embedded IPv4 forms, platform hosts."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notify.config import NotifyConfig, platform_endpoints
from services.notify.egress import (
    CGNAT,
    LINK_LOCAL,
    LOOPBACK,
    METADATA,
    MULTICAST,
    OPENABLE,
    PLATFORM_ENDPOINT,
    PLATFORM_HOST,
    PRIVATE,
    RESERVED,
    UNIQUE_LOCAL,
    UNSPECIFIED,
    EgressDenied,
    EgressPolicy,
    classify,
    config_targets,
    parse_ip,
)
from shared.settings import SettingsError, load_settings

DENY = EgressPolicy()
ALLOW = EgressPolicy(allow_private=True)

CASES = [
    ("127.0.0.1", LOOPBACK),
    ("127.8.9.10", LOOPBACK),
    ("::1", LOOPBACK),
    ("::ffff:127.0.0.1", LOOPBACK),
    ("0x7f.1", LOOPBACK),
    ("2130706433", LOOPBACK),
    ("127.1", LOOPBACK),
    ("64:ff9b::7f00:1", LOOPBACK),
    ("2002:7f00:1::", LOOPBACK),
    ("::7f00:1", LOOPBACK),
    ("169.254.169.254", LINK_LOCAL),
    ("::ffff:169.254.169.254", LINK_LOCAL),
    ("fe80::1", LINK_LOCAL),
    ("10.0.0.8", PRIVATE),
    ("172.16.5.4", PRIVATE),
    ("192.168.1.1", PRIVATE),
    ("::ffff:10.1.2.3", PRIVATE),
    ("100.64.0.1", CGNAT),
    ("100.127.255.254", CGNAT),
    ("fd00::1", UNIQUE_LOCAL),
    ("fd00:ec2::254", METADATA),
    ("100.100.100.200", METADATA),
    ("::ffff:100.100.100.200", METADATA),
    ("0.0.0.0", UNSPECIFIED),
    ("::", UNSPECIFIED),
    ("224.0.0.1", MULTICAST),
    ("ff02::1", MULTICAST),
    ("240.0.0.1", RESERVED),
    ("255.255.255.255", RESERVED),
    ("192.0.2.10", RESERVED),
    ("0.1.2.3", RESERVED),
    ("8.8.8.8", None),
    ("2606:4700::1111", None),
    ("::ffff:8.8.8.8", None),
]


@pytest.mark.parametrize(("host", "category"), CASES)
def test_literal_targets_are_classified(host: str, category: str | None) -> None:
    ip = parse_ip(host)
    assert ip is not None
    assert classify(ip) == category
    assert DENY.check_target(host, 443) == category
    # Allowing private targets opens loopback and private ranges, never the others.
    assert ALLOW.check_target(host, 443) == (None if category in OPENABLE else category)


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_ipv4_mapped_form_is_judged_as_its_ipv4_address(value: int) -> None:
    v4 = ipaddress.IPv4Address(value)
    mapped = ipaddress.IPv6Address(f"::ffff:{v4}")
    assert classify(mapped) == classify(v4)
    assert DENY.check_address("h", str(mapped), 80) == DENY.check_address("h", str(v4), 80)


def test_names_localhost_and_platform_hosts() -> None:
    assert DENY.check_target("localhost", 80) == LOOPBACK
    assert DENY.check_target("api.LOCALHOST.", 80) == LOOPBACK
    assert ALLOW.check_target("localhost", 80) is None
    # Other names are judged on what they resolve to, at send time.
    assert DENY.check_target("hooks.example.com", 443) is None
    policy = EgressPolicy.build(
        allow_private=True,
        denied_hosts=["scoring"],
        platform=[("postgres", 5432), ("127.0.0.1", 9092), ("10.0.0.5", 5432)],
    )
    assert policy.check_target("Postgres", 80) == PLATFORM_HOST
    assert policy.check_target("scoring.", 8002) == PLATFORM_HOST
    assert policy.check_address("postgres", "203.0.113.9", 5432) == PLATFORM_HOST
    # The platform's endpoints stay refused where private targets are allowed...
    assert policy.check_target("localhost", 9092) == PLATFORM_ENDPOINT
    assert policy.check_target("[::1]", 9092) == PLATFORM_ENDPOINT
    assert policy.check_address("x.test", "::ffff:10.0.0.5", 5432) == PLATFORM_ENDPOINT
    # ...while the same hosts on other ports are receivers like any other.
    assert policy.check_target("127.0.0.1", 9093) is None
    assert policy.check_target("10.0.0.5", 80) is None


def test_allowed_hosts_open_only_their_own_private_addresses() -> None:
    policy = EgressPolicy.build(allow_private=False, allowed_hosts=["smtp.intra", "10.9.9.9"])
    assert policy.check_address("smtp.intra", "10.1.1.1", 25) is None
    assert policy.check_target("10.9.9.9", 25) is None
    assert policy.check_address("other.intra", "10.1.1.1", 25) == PRIVATE
    assert policy.check_address("smtp.intra", "169.254.169.254", 25) == LINK_LOCAL


def test_one_refused_address_refuses_the_name() -> None:
    assert ALLOW.check_resolved("h", 80, ["10.0.0.1", "10.0.0.1", "::1"]) == ["10.0.0.1", "::1"]
    with pytest.raises(EgressDenied) as err:
        DENY.check_resolved("h", 80, ["8.8.8.8", "127.0.0.1"])
    assert err.value.reason == "denied by egress policy: loopback"
    with pytest.raises(EgressDenied):
        DENY.check_resolved("h", 80, [])


def test_config_targets() -> None:
    assert config_targets({"url": "https://h.example/x?t=1"}) == [("url", "h.example", 443)]
    assert config_targets({"url": "http://[::1]:8080/"}) == [("url", "::1", 8080)]
    assert config_targets({"host": "smtp", "port": 587}) == [("host", "smtp", 587)]
    assert config_targets({"url": "http://[::1/x"}) == []


def test_platform_endpoints_come_from_the_settings() -> None:
    settings = load_settings(
        database_url="postgresql+asyncpg://kpi:pw@postgres:5432/kpi",
        kafka_bootstrap="kafka:9092,10.0.0.7:9093",
        public_url="https://kpi.example.com",
        notify_denied_hosts="ingest, scoring",
    )
    ends = platform_endpoints(settings)
    assert ("postgres", 5432) in ends and ("kafka", 9092) in ends
    assert ("10.0.0.7", 9093) in ends and ("kpi.example.com", 443) in ends
    assert ("127.0.0.1", 8003) in ends  # KPI_NOTIFY_URL's default
    policy = NotifyConfig.from_settings(settings).egress
    for host in ("postgres", "kafka", "kpi.example.com", "ingest", "scoring"):
        assert policy.check_target(host, 1234) == PLATFORM_HOST
    assert not policy.allow_private
    with pytest.raises(SettingsError, match="KPI_NOTIFY_DENIED_HOSTS"):
        load_settings(notify_denied_hosts="ok, not a host")
