"""The address policy's deny tables, the operator allow-list, and FetchSettings."""

from __future__ import annotations

import pytest

from imagegate.fetch import AddressPolicy, FetchSettings

PRODUCTION = AddressPolicy()

# (address, why it must be refused) — every row of both deny tables, plus edge addresses.
DENIED_V4 = [
    "0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.254", "127.0.0.1",
    "127.0.0.2", "127.255.255.255", "169.254.169.254", "169.254.0.1", "172.16.0.1", "172.31.255.255",
    "192.0.0.1", "192.0.0.170", "192.0.2.1", "192.88.99.1", "192.168.0.1", "192.168.255.255",
    "198.18.0.1", "198.19.255.255", "198.51.100.7", "203.0.113.9", "224.0.0.1", "239.255.255.250",
    "240.0.0.1", "254.1.2.3", "255.255.255.255",
]
DENIED_V6 = [
    "::", "::1", "::ffff:127.0.0.1", "::ffff:8.8.8.8", "::127.0.0.1", "::8.8.8.8", "64:ff9b::808:808",
    "64:ff9b:1::1", "100::1", "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:2::1",
    "2001:10::1", "2001:20::1", "2001:db8::1", "2001:db8:ffff::1", "2002:7f00:1::1", "2002:808:808::1",
    "3fff::1", "5f00::1", "fc00::1", "fd12:3456::1", "fe80::1", "febf::1", "fec0::1", "ff02::1",
    "ff0e::1", "4000::1", "e000::1", "1::1",
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "100.63.255.255", "100.128.0.0", "172.15.255.255",
           "172.32.0.0", "192.169.0.1", "198.17.255.255", "198.20.0.0", "223.255.255.254",
           "2606:4700:4700::1111", "2001:4860:4860::8888", "2a00:1450:4001::1", "2001:200::1"]


@pytest.mark.parametrize("address", DENIED_V4 + DENIED_V6)
def test_special_purpose_addresses_are_refused(address: str) -> None:
    assert PRODUCTION.refusal(address) is not None
    assert not PRODUCTION.allows(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert PRODUCTION.allows(address), PRODUCTION.refusal(address)


@pytest.mark.parametrize(("address", "label"), [
    ("100.64.1.1", "shared address space (CGNAT)"),  # is_private misses this one
    ("224.0.0.251", "multicast"),  # is_global calls some multicast global
    ("64:ff9b::a00:1", "NAT64"),  # ... and NAT64
    ("::ffff:10.0.0.1", "IPv4-mapped"),
    ("::10.0.0.1", "IPv4-compatible"),
    ("2001::5", "Teredo"),
    ("2002::1", "6to4"),
    ("2001:db8::5", "documentation"),
])
def test_the_label_names_the_real_reason(address: str, label: str) -> None:
    assert PRODUCTION.refusal(address) == label


def test_scoped_and_malformed_addresses_are_refused() -> None:
    assert PRODUCTION.refusal("fe80::1%lo") is not None
    assert PRODUCTION.refusal("2606:4700::1%eth0") == "scoped IPv6 address"
    assert PRODUCTION.refusal("img.test") == "not an IP address"
    assert PRODUCTION.refusal("127.1") == "not an IP address"


def test_the_production_policy_refuses_the_test_origin() -> None:
    """Tests treat 127.0.0.2 as public through an injected policy; the real one must not."""
    assert not AddressPolicy().allows("127.0.0.2")
    assert not AddressPolicy.from_settings(FetchSettings()).allows("127.0.0.2")


def test_the_operator_allow_list_overrides_the_deny_tables() -> None:
    policy = AddressPolicy(["10.20.0.0/16", "fd00:1::/64"])
    assert policy.allows("10.20.3.4") and policy.allows("fd00:1::5")
    assert not policy.allows("10.21.0.1") and not policy.allows("fd00:2::1")
    assert not policy.allows("::ffff:10.20.3.4")  # the mapped spelling is not the allow-listed address
    assert AddressPolicy.from_settings(FetchSettings(allow_cidrs=("10.20.0.0/16",))).allows("10.20.0.1")


@pytest.mark.parametrize("cidr", ["10.20.0.1/16", "not-a-network", "10.0.0.0/33", ""])
def test_a_malformed_allow_list_is_a_configuration_error(cidr: str) -> None:
    with pytest.raises(ValueError, match="allow_cidrs"):
        FetchSettings(allow_cidrs=(cidr,))


def test_settings_defaults_are_the_documented_ones() -> None:
    s = FetchSettings()
    assert s.allowed_ports == (80, 443)
    assert s.allow_cidrs == ()
    assert s.timeout == 10.0
    assert s.max_redirects == 3
    assert s.max_image_bytes == 50 * 1024 * 1024
    assert s.max_total_bytes == 200 * 1024 * 1024
    assert s.max_url_length == 8192
    assert (s.per_request_concurrency, s.process_concurrency) == (4, 64)
    assert s.spool_memory_bytes == 1024 * 1024
    # a data: URL may carry a whole 50 MB image in Base64, and not much more
    assert 4 * s.max_image_bytes // 3 < s.max_data_url_length < 4 * s.max_image_bytes // 3 + 1024


@pytest.mark.parametrize("bad", [{"allowed_ports": ()}, {"allowed_ports": (0,)}, {"allowed_ports": (70000,)},
                                 {"timeout": 0}, {"max_image_bytes": -1}, {"max_redirects": -1},
                                 {"process_concurrency": 0}])
def test_nonsensical_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FetchSettings(**bad)  # type: ignore[arg-type]
