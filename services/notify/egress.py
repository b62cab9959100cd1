"""Egress policy of channel targets (pure): which hosts and addresses notify may contact."""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

LOOPBACK: Final = "loopback"
PRIVATE: Final = "private"
CGNAT: Final = "carrier-grade NAT"
UNIQUE_LOCAL: Final = "unique local"
LINK_LOCAL: Final = "link-local"
UNSPECIFIED: Final = "unspecified"
MULTICAST: Final = "multicast"
RESERVED: Final = "reserved"
METADATA: Final = "cloud metadata service"
PLATFORM_HOST: Final = "the platform's own host"
PLATFORM_ENDPOINT: Final = "the platform's own endpoint"

# What KPI_NOTIFY_ALLOW_PRIVATE_TARGETS (or a listed host) opens. Never these others:
# link-local holds the cloud metadata services (169.254.169.254), the unspecified address
# reaches this host, and multicast or reserved ranges are no receiver's address.
OPENABLE: Final = frozenset({LOOPBACK, PRIVATE, CGNAT, UNIQUE_LOCAL})

_RFC1918: Final = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
_CGNAT_NET: Final = ipaddress.IPv4Network("100.64.0.0/10")
_ULA_NET: Final = ipaddress.IPv6Network("fc00::/7")
_SITE_LOCAL_NET: Final = ipaddress.IPv6Network("fec0::/10")
_NAT64_NETS: Final = tuple(ipaddress.IPv6Network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48"))
# Metadata services outside link-local: Alibaba Cloud's (in CGNAT space) and AWS's IPv6 one
# (a ULA). The IPv4 link-local one (169.254.169.254: AWS, GCP, Azure, ...) is link-local.
_METADATA: Final = frozenset(ipaddress.ip_address(a) for a in ("100.100.100.200", "fd00:ec2::254"))
# The key of every loopback address and name in `EgressPolicy.own_endpoints`.
LOOPBACK_KEY: Final = "loopback"


class Refused(Exception):
    """A send refused by policy before anything is contacted; `reason` is safe to store."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EgressDenied(Refused):
    """The egress policy refuses the target (its host, or an address it resolved to)."""

    def __init__(self, why: str) -> None:
        super().__init__(f"denied by egress policy: {why}")
        self.why = why


def normalize_host(host: str) -> str:
    """Lower case, no IPv6 brackets, no trailing dot: the form hosts are compared in."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host[:-1] if host.endswith(".") else host


def parse_ip(host: str) -> IPAddress | None:
    """The address a host text denotes by itself, also in the forms the C resolver reads.

    `0x7f.1`, `2130706433` or `127.1` are 127.0.0.1 to getaddrinfo (inet_aton), so they are
    addresses here too; anything else is a name (None).
    """
    host = normalize_host(host)
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefx." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, compatible, 6to4, NAT64, Teredo)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    value = int(ip)
    if any(ip in net for net in _NAT64_NETS):
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if value >> 32 == 0 and value > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(value)
    return None


def unwrap(ip: IPAddress) -> IPAddress:
    """The address actually reached: the IPv4 one inside an IPv6 form, else itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None:
            return inner
        if ip.scope_id is not None:
            return ipaddress.IPv6Address(str(ip).split("%", 1)[0])
    return ip


def classify(ip: IPAddress) -> str | None:
    """The special range an address is in (None: a public, global unicast address)."""
    ip = unwrap(ip)
    if ip in _METADATA:
        return METADATA
    if ip.is_unspecified:
        return UNSPECIFIED
    if ip.is_loopback:
        return LOOPBACK
    if ip.is_link_local:
        return LINK_LOCAL
    if ip.is_multicast:
        return MULTICAST
    if isinstance(ip, ipaddress.IPv4Address):
        if any(ip in net for net in _RFC1918):
            return PRIVATE
        if ip in _CGNAT_NET:
            return CGNAT
    elif ip in _ULA_NET:
        return UNIQUE_LOCAL
    elif ip in _SITE_LOCAL_NET:  # deprecated site-local: private by intent
        return PRIVATE
    # Documentation, benchmarking, "this network", 240/4, broadcast, and the like.
    return None if ip.is_global else RESERVED


def is_loopback_name(host: str) -> bool:
    """`localhost` and its subdomains always resolve to loopback (RFC 6761)."""
    name = normalize_host(host)
    return name == "localhost" or name.endswith(".localhost")


def endpoint_key(host: str) -> str | None:
    """How an endpoint of the platform is recognised: an address, or any loopback one."""
    if is_loopback_name(host):
        return LOOPBACK_KEY
    ip = parse_ip(host)
    if ip is None:
        return None
    ip = unwrap(ip)
    # 0.0.0.0 and :: (a server bound to every interface) are reached on loopback too.
    return LOOPBACK_KEY if ip.is_loopback or ip.is_unspecified else str(ip)


@dataclass(frozen=True)
class EgressPolicy:
    """Which targets channels may reach; built once from the settings (NotifyConfig).

    `denied_hosts` are names of the platform, refused on every port; `own_endpoints` are
    (address or LOOPBACK_KEY, port) pairs of the platform, refused even where private
    targets are allowed (a receiver on this machine must not be the database's port).
    """

    allow_private: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    denied_hosts: frozenset[str] = frozenset()
    own_endpoints: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def build(
        cls,
        *,
        allow_private: bool,
        allowed_hosts: Iterable[str] = (),
        denied_hosts: Iterable[str] = (),
        platform: Iterable[tuple[str, int]] = (),
    ) -> EgressPolicy:
        """The policy from the settings' host lists and the platform's (host, port) pairs."""
        names = {normalize_host(h) for h in denied_hosts}
        endpoints: set[tuple[str, int]] = set()
        for host, port in platform:
            key = endpoint_key(host)
            if key is None:
                names.add(normalize_host(host))
            else:
                endpoints.add((key, port))
        return cls(
            allow_private=allow_private,
            allowed_hosts=frozenset(normalize_host(h) for h in allowed_hosts),
            denied_hosts=frozenset(names),
            own_endpoints=frozenset(endpoints),
        )

    def check_target(self, host: str, port: int) -> str | None:
        """Configuration time: why `host:port` is refused from its text alone (None: fine).

        A name other than localhost is only judged by what it resolves to, at send time.
        """
        name = normalize_host(host)
        if name in self.denied_hosts:
            return PLATFORM_HOST
        ip = parse_ip(name)
        if ip is not None:
            return self._check_ip(name, ip, port)
        if is_loopback_name(name):
            if (LOOPBACK_KEY, port) in self.own_endpoints:
                return PLATFORM_ENDPOINT
            return None if self._opens(name, LOOPBACK) else LOOPBACK
        return None

    def check_address(self, host: str, address: str, port: int) -> str | None:
        """Send time: why connecting to `address`, which `host` resolved to, is refused."""
        name = normalize_host(host)
        if name in self.denied_hosts:
            return PLATFORM_HOST
        ip = parse_ip(address)
        if ip is None:  # getaddrinfo answers addresses; anything else is not one to trust
            return RESERVED
        return self._check_ip(name, ip, port)

    def _check_ip(self, name: str, ip: IPAddress, port: int) -> str | None:
        category = classify(ip)
        key = LOOPBACK_KEY if category in (LOOPBACK, UNSPECIFIED) else str(unwrap(ip))
        if (key, port) in self.own_endpoints:
            return PLATFORM_ENDPOINT
        if category is None or self._opens(name, category):
            return None
        return category

    def _opens(self, name: str, category: str) -> bool:
        return category in OPENABLE and (self.allow_private or name in self.allowed_hosts)

    def check_resolved(self, host: str, port: int, addresses: Iterable[str]) -> list[str]:
        """The addresses to connect to, in order; EgressDenied if any one is refused.

        One refused address refuses the name: a name answering a public and a private
        address is the shape of a rebinding attempt, not a receiver.
        """
        out: list[str] = []
        for address in addresses:
            why = self.check_address(host, address, port)
            if why is not None:
                raise EgressDenied(why)
            if address not in out:
                out.append(address)
        if not out:
            raise EgressDenied("the name resolved to no address")
        return out


def config_targets(config: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """(config field, host, port) of every place a channel config sends to."""
    out: list[tuple[str, str, int]] = []
    url = config.get("url")
    if isinstance(url, str):
        try:
            parts = urllib.parse.urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError:
            host = port = None
        if host:
            out.append(("url", host, port or (443 if parts.scheme == "https" else 80)))
    host = config.get("host")
    if isinstance(host, str) and host:
        port = config.get("port")
        out.append(("host", host, port if isinstance(port, int) else 25))
    return out


def host_port(text: str, default_port: int) -> tuple[str, int] | None:
    """(host, port) of `host`, `host:port`, `[v6]:port` or a URL; None when there is no host."""
    if "://" not in text:
        text = "//" + text
    try:
        parts = urllib.parse.urlsplit(text)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    return (host, port or default_port) if host else None
