"""The policy at the two places where addresses become sockets: the DNS answer and the socket factory."""

from __future__ import annotations

import socket

import pytest

from imagegate.fetch import AddressPolicy, BlockedAddress, PolicyResolver
from imagegate.fetch.resolver import EmptyAnswer, guarded_socket_factory

from .support import FakeResolver

POLICY = AddressPolicy()


async def test_an_all_public_answer_passes_through_unchanged() -> None:
    inner = FakeResolver({"cdn.test": ["8.8.8.8", "2606:4700::1"]})
    answer = await PolicyResolver(inner, POLICY).resolve("cdn.test", 443)
    assert [r["host"] for r in answer] == ["8.8.8.8", "2606:4700::1"]
    assert all(r["port"] == 443 for r in answer)


@pytest.mark.parametrize("bad", ["127.0.0.1", "10.0.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
                                 "::1", "::ffff:8.8.8.8", "fd00::1", "fe80::1", "64:ff9b::808:808",
                                 "224.0.0.1", "not-an-address"])
@pytest.mark.parametrize("position", ["alone", "first", "last"])
async def test_one_refused_address_refuses_the_whole_answer(bad: str, position: str) -> None:
    answer = {"alone": [bad], "first": [bad, "8.8.8.8"], "last": ["8.8.8.8", "1.1.1.1", bad]}[position]
    resolver = PolicyResolver(FakeResolver({"evil.test": answer}), POLICY)
    with pytest.raises(BlockedAddress):
        await resolver.resolve("evil.test", 80)


async def test_an_empty_answer_is_an_error() -> None:
    with pytest.raises(EmptyAnswer):
        await PolicyResolver(FakeResolver({"empty.test": []}), POLICY).resolve("empty.test")


async def test_resolution_errors_pass_through() -> None:
    with pytest.raises(socket.gaierror):
        await PolicyResolver(FakeResolver(), POLICY).resolve("nxdomain.test")


async def test_the_allow_list_applies_to_answers() -> None:
    resolver = PolicyResolver(FakeResolver({"assets.test": ["10.1.2.3"]}), AddressPolicy(["10.1.2.0/24"]))
    assert [r["host"] for r in await resolver.resolve("assets.test")] == ["10.1.2.3"]


async def test_closing_closes_the_inner_resolver() -> None:
    inner = FakeResolver()
    await PolicyResolver(inner, POLICY).close()
    assert inner.closed


def _addrinfo(host: str, port: int) -> tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[object, ...]]:
    if ":" in host:
        return socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port, 0, 0)
    return socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port)


@pytest.mark.parametrize("host", ["127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1",
                                  "fe80::1", "0.0.0.0"])
def test_the_socket_factory_refuses_refused_addresses(host: str) -> None:
    factory = guarded_socket_factory(POLICY, (80, 443))
    with pytest.raises(BlockedAddress):
        factory(_addrinfo(host, 80))


def test_the_socket_factory_refuses_other_ports() -> None:
    with pytest.raises(BlockedAddress):
        guarded_socket_factory(POLICY, (80, 443))(_addrinfo("8.8.8.8", 22))


def test_the_socket_factory_makes_an_unconnected_socket_for_allowed_addresses() -> None:
    sock = guarded_socket_factory(POLICY, (80, 443))(_addrinfo("8.8.8.8", 443))
    try:
        assert sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM
    finally:
        sock.close()
