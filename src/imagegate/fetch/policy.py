"""What the fetcher may fetch: its settings (`[fetch]`) and the address policy with its deny tables.

The policy is an explicit table of special-purpose ranges, not `ipaddress.is_global` (which calls
multicast and NAT64 "global") nor `is_private` (which misses 100.64/10). IPv6 is allowed only inside
2000::/3, minus the ranges below; IPv4-mapped and IPv4-compatible addresses are refused outright, so an
IPv4 address cannot be smuggled in an IPv6 spelling. Operators may allow-list CIDRs (`allow_cidrs`),
which override the deny tables; that is configuration, never a test-only switch.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FetchSettings:
    """`[fetch]` in the config file. Every field has the documented default."""

    allowed_ports: tuple[int, ...] = (80, 443)
    allow_cidrs: tuple[str, ...] = ()  # operator allow-list, e.g. ("10.20.0.0/16",) for an asset server
    timeout: float = 10.0  # one deadline for the whole fetch: DNS, connect, every redirect, the body
    max_redirects: int = 3
    max_image_bytes: int = 50 * MiB
    max_total_bytes: int = 200 * MiB  # all images of one request together
    max_url_length: int = 8192  # http(s) URLs; data: URLs are bounded by max_image_bytes instead
    per_request_concurrency: int = 4
    process_concurrency: int = 64
    spool_memory_bytes: int = 1 * MiB  # bodies larger than this are spooled to a temporary file

    def __post_init__(self) -> None:
        if not self.allowed_ports or any(not isinstance(p, int) or not 0 < p < 65536
                                         for p in self.allowed_ports):
            raise ValueError("[fetch] allowed_ports must be a non-empty list of ports 1-65535")
        for name in ("timeout", "max_image_bytes", "max_total_bytes", "max_url_length",
                     "per_request_concurrency", "process_concurrency"):
            if not getattr(self, name) > 0:
                raise ValueError(f"[fetch] {name} must be positive")
        if self.max_redirects < 0 or self.spool_memory_bytes < 0:
            raise ValueError("[fetch] max_redirects and spool_memory_bytes must not be negative")
        parse_cidrs(self.allow_cidrs)

    @property
    def max_data_url_length(self) -> int:
        """The longest `data:` URL worth decoding: the image byte limit in Base64, plus a header."""
        return 256 + 4 * math.ceil(self.max_image_bytes / 3)


def parse_cidrs(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=True))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"[fetch] allow_cidrs: {cidr!r} is not a network (e.g. '10.20.0.0/16')") from exc
    return tuple(networks)


def _table(rows: Iterable[tuple[str, str]]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(cidr), label) for cidr, label in rows)


# IANA IPv4 Special-Purpose Address Registry (RFC 6890 and successors), plus multicast and reserved.
IPV4_DENY = _table([
    ("0.0.0.0/8", "this network"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation (TEST-NET-1)"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "documentation (TEST-NET-3)"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "limited broadcast"),
    ("240.0.0.0/4", "reserved"),
])

# Most specific first, so that the label names the real reason. Anything outside 2000::/3 is refused
# even when not listed; the rows outside it are listed for the label.
IPV6_DENY = _table([
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::ffff:0:0/96", "IPv4-mapped"),
    ("::/96", "IPv4-compatible"),
    ("64:ff9b::/96", "NAT64"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    ("2001::/32", "Teredo"),
    ("2001:db8::/32", "documentation"),
    ("2001::/23", "IETF protocol assignments"),
    ("2002::/16", "6to4"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "SRv6 SIDs"),
    ("fc00::/7", "unique local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
])

_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")


class AddressPolicy:
    """Decides whether an IP address may be dialled. Immutable; one per fetcher."""

    def __init__(self, allow_cidrs: Iterable[str] = ()) -> None:
        self._allow = parse_cidrs(allow_cidrs)

    @classmethod
    def from_settings(cls, settings: FetchSettings) -> AddressPolicy:
        return cls(settings.allow_cidrs)

    def refusal(self, address: str | IPAddress) -> str | None:
        """None when `address` may be dialled, else the deny-table label (for logs, never for clients)."""
        if isinstance(address, str):
            try:
                address = ipaddress.ip_address(address)
            except ValueError:
                return "not an IP address"
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            return "scoped IPv6 address"
        if any(address in network for network in self._allow):
            return None
        if isinstance(address, ipaddress.IPv4Address):
            return next((label for network, label in IPV4_DENY if address in network), None)
        label = next((label for network, label in IPV6_DENY if address in network), None)
        if label is None and address not in _GLOBAL_UNICAST_V6:
            label = "not global unicast"
        return label

    def allows(self, address: str | IPAddress) -> bool:
        return self.refusal(address) is None
