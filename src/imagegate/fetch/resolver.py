"""Where the address policy is enforced: on the DNS answer the connector dials, and on the socket.

`PolicyResolver` wraps any aiohttp resolver and refuses the whole answer if any address in it is not
allowed; aiohttp's connector then dials exactly the addresses it returned, so there is no second lookup
and no rebinding window. IP-literal hosts never reach a resolver, so `guarded_socket_factory` checks the
address (and port) again where the socket is made.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Collection

from aiohttp.abc import AbstractResolver, ResolveResult

from imagegate.fetch.policy import AddressPolicy

AddrInfo = tuple[int | socket.AddressFamily, int | socket.SocketKind, int, str, tuple[object, ...]]


class BlockedAddress(OSError):
    """A resolved or dialled address the policy refuses. Its text is for logs only, never for clients."""


class EmptyAnswer(OSError):
    """The resolver returned no address at all."""


class PolicyResolver(AbstractResolver):
    """Refuses the whole answer when any A/AAAA record is not allowed. Owns (and closes) `inner`."""

    def __init__(self, inner: AbstractResolver, policy: AddressPolicy) -> None:
        self._inner = inner
        self._policy = policy

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        answer = await self._inner.resolve(host, port, family)
        if not answer:
            raise EmptyAnswer(f"no address for {host!r}")
        for record in answer:
            reason = self._policy.refusal(record["host"])
            if reason is not None:
                raise BlockedAddress(f"{host!r} resolves to a refused address ({reason})")
        return answer

    async def close(self) -> None:
        await self._inner.close()


def guarded_socket_factory(policy: AddressPolicy,
                           ports: Collection[int]) -> Callable[[AddrInfo], socket.socket]:
    """An aiohttp `socket_factory` that refuses to create a socket for an address the policy refuses."""

    def factory(addr_info: AddrInfo) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        host, port = str(sockaddr[0]), sockaddr[1]
        reason = policy.refusal(host)
        if reason is not None:
            raise BlockedAddress(f"refused to connect to a {reason} address")
        if port not in ports:
            raise BlockedAddress("refused to connect to a port that is not allowed")
        return socket.socket(family, type_, proto)

    return factory
