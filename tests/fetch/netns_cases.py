"""Cases that run inside a private network namespace (`unshare -rn`), run by test_netns.py.

Inside, `lo` carries "public" addresses (8.8.4.4, 2001:4860:4860::8844) and private ones (10.0.0.1,
169.254.169.254, ...), and one origin listens on port 80 of all of them. So the production policy and
default ports run unchanged, and every refused case is a real attack that would succeed if the code were
wrong: the private listeners are reachable (see the controls). Even a broken fetcher cannot send a packet
off this machine here: the namespace has no interface but `lo`, which `main` verifies before anything.

Run as `python -m fetch.netns_cases` with tests/ on the path; prints one JSON object {case: "ok" | why}.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from imagegate.core.errors import GatewayError, InvalidImageURL
from imagegate.core.jobs import UrlRef
from imagegate.fetch import AddressPolicy, FetchSettings, PolicyResolver, SafeFetcher
from imagegate.fetch.resolver import BlockedAddress, guarded_socket_factory

from .support import PNG, FakeResolver, Origin, Tripwire, redirect, reply

PUBLIC_V4, PUBLIC_V6 = "8.8.4.4", "2001:4860:4860::8844"
PRIVATE_V4 = ["10.0.0.1", "169.254.169.254", "192.168.1.1", "172.16.0.1", "100.64.0.1"]
PRIVATE_V6 = ["fd00::1"]
ADDRESSES = [PUBLIC_V4, *PRIVATE_V4]
ADDRESSES_V6 = [PUBLIC_V6, *PRIVATE_V6]
NAMES = {"public.example": [PUBLIC_V4], "private.example": ["10.0.0.1"], "loopback.example": ["127.0.0.1"],
         "mixed.example": [PUBLIC_V4, "10.0.0.1"], "ula.example": ["fd00::1"]}


class Env:
    def __init__(self, origin: Origin, other_port: Origin, tripwire: Tripwire) -> None:
        self.origin, self.other_port, self.tripwire = origin, other_port, tripwire
        self.fetchers: list[SafeFetcher] = []

    def fetcher(self, **settings: Any) -> SafeFetcher:
        """The production fetcher: default policy and ports; only the resolver is injected."""
        fetcher = SafeFetcher(FetchSettings(timeout=3.0, **settings), resolver=FakeResolver(
            {k: list(v) for k, v in NAMES.items()}))
        self.fetchers.append(fetcher)
        return fetcher

    async def fetch(self, url: str, **settings: Any) -> None:
        images = await self.fetcher(**settings).fetch_all([UrlRef("image_url", url)])
        for image in images:
            image.close()

    async def refused(self, url: str) -> None:
        try:
            await self.fetch(url)
        except InvalidImageURL as exc:
            assert exc.param == "image_url", exc.param
            for address in ADDRESSES + ADDRESSES_V6:
                assert address not in exc.message, exc.message
        else:
            raise AssertionError(f"{url} was fetched")

    def hits(self) -> list[tuple[str, str]]:
        return [(r.local[0], r.path) for r in self.origin.requests + self.other_port.requests]


Case = Callable[[Env], Awaitable[None]]
CASES: dict[str, Case] = {}


def case(name: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        CASES[name] = fn
        return fn
    return register


def hostile(name: str, url: str, allowed_hits: list[tuple[str, str]] | None = None,
            redirect_to: str | None = None) -> None:
    async def run(env: Env) -> None:
        if redirect_to is not None:
            env.origin.route("/r", redirect(redirect_to))
        await env.refused(url)
        assert env.hits() == (allowed_hits or []), env.hits()
        allowed = {a for a, _ in allowed_hits or []}
        assert all(host in allowed for host, _ in env.tripwire.dialled), env.tripwire.dialled
    CASES[name] = run


# --- controls: the setup is real, so the refusals below mean something ----------------------------
@case("control: every private listener is reachable by a plain client")
async def _reachable(env: Env) -> None:
    for address in ["127.0.0.1", "::1", *PRIVATE_V4, *PRIVATE_V6]:
        reader, writer = await asyncio.open_connection(address, 80)
        writer.write(b"GET /img.png HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readline()).startswith(b"HTTP/1.1 200"), address
        writer.close()
        await writer.wait_closed()
    assert len(env.hits()) == 2 + len(PRIVATE_V4) + len(PRIVATE_V6)


@case("control: a public IPv4 literal is fetched with the production policy")
async def _public_v4(env: Env) -> None:
    await env.fetch(f"http://{PUBLIC_V4}/img.png")
    assert env.hits() == [(PUBLIC_V4, "/img.png")]


@case("control: a public IPv6 literal is fetched with the production policy")
async def _public_v6(env: Env) -> None:
    await env.fetch(f"http://[{PUBLIC_V6}]/img.png")
    assert env.hits() == [(PUBLIC_V6, "/img.png")]


@case("control: a public name is fetched, dialling the address it resolved to")
async def _public_name(env: Env) -> None:
    await env.fetch("http://public.example/img.png")
    assert env.hits() == [(PUBLIC_V4, "/img.png")] and env.tripwire.dialled == [(PUBLIC_V4, 80)]


@case("control: the operator allow-list admits a private address")
async def _allow_list(env: Env) -> None:
    await env.fetch("http://10.0.0.1/img.png", allow_cidrs=("10.0.0.1/32",))
    assert env.hits() == [("10.0.0.1", "/img.png")]


# --- literal private addresses ---------------------------------------------------------------------
for _address in ["127.0.0.1", "0.0.0.0", *PRIVATE_V4]:
    hostile(f"literal {_address}", f"http://{_address}/img.png")
for _address in ["::1", "::", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", *PRIVATE_V6]:
    hostile(f"literal [{_address}]", f"http://[{_address}]/img.png")
for _spelling in ["2130706433", "127.1", "0x7f.0.0.1", "0177.0.0.1", "167772161", "0xa.0.0.1"]:
    hostile(f"legacy spelling {_spelling}", f"http://{_spelling}/img.png")
hostile("literal 8.8.4.4 on port 8080", f"http://{PUBLIC_V4}:8080/img.png")

# --- names -------------------------------------------------------------------------------------------
hostile("name resolving to 10.0.0.1", "http://private.example/img.png")
hostile("name resolving to loopback", "http://loopback.example/img.png")
hostile("name resolving to a ULA", "http://ula.example/img.png")
hostile("name resolving to public + private", "http://mixed.example/img.png")
hostile("localhost", "http://localhost/img.png")

# --- redirects from the public origin -------------------------------------------------------------
for _target in ["http://10.0.0.1/img.png", "http://169.254.169.254/latest/meta-data/", "http://[::1]/img.png",
                "http://private.example/img.png", "http://127.1/img.png", f"http://{PUBLIC_V4}:8080/img.png"]:
    hostile(f"redirect to {_target}", f"http://{PUBLIC_V4}/r", [(PUBLIC_V4, "/r")], redirect_to=_target)


# --- each layer alone, bypassing the URL checks ----------------------------------------------------
async def _raw_get(url: str, connector: aiohttp.TCPConnector) -> BaseException | None:
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            async with session.get(url) as response:
                await response.read()
        except aiohttp.ClientError as exc:
            return exc
    return None


@case("layer: the socket factory alone stops a literal private address")
async def _socket_layer(env: Env) -> None:
    assert await _raw_get("http://10.0.0.1/img.png", aiohttp.TCPConnector()) is None  # control
    connector = aiohttp.TCPConnector(socket_factory=guarded_socket_factory(AddressPolicy(), (80, 443)))
    error = await _raw_get("http://10.0.0.1/img.png", connector)
    assert isinstance(getattr(error, "os_error", None), BlockedAddress), repr(error)
    assert env.hits() == [("10.0.0.1", "/img.png")]  # only the control got through


@case("layer: the policy resolver alone stops a private answer")
async def _resolver_layer(env: Env) -> None:
    resolver = PolicyResolver(FakeResolver({"private.example": ["10.0.0.1"]}), AddressPolicy())
    error = await _raw_get("http://private.example/img.png", aiohttp.TCPConnector(resolver=resolver))
    assert isinstance(getattr(error, "os_error", None), BlockedAddress), repr(error)
    await resolver.close()
    assert env.hits() == []


# --- the runner --------------------------------------------------------------------------------------
def _in_private_namespace() -> bool:
    return [name for _, name in socket.if_nameindex()] == ["lo"]


async def _origin(port: int) -> Origin:
    origin = await Origin("0.0.0.0", port=port).start("0.0.0.0", "::")
    origin.route("/img.png", reply(PNG))
    return origin


async def run_all() -> dict[str, str]:
    results: dict[str, str] = {}
    origin, other_port = await _origin(80), await _origin(8080)
    try:
        for name, fn in CASES.items():
            origin.requests.clear()
            other_port.requests.clear()
            tripwire = Tripwire(allowed=None)  # record only: the namespace is the fence
            env = Env(origin, other_port, tripwire)
            try:
                with tripwire.armed():
                    await asyncio.wait_for(fn(env), 10)
                results[name] = "ok"
            except (AssertionError, GatewayError, OSError, TimeoutError, aiohttp.ClientError):
                results[name] = traceback.format_exc(limit=4)
            finally:
                for fetcher in env.fetchers:
                    await fetcher.aclose()
    finally:
        await origin.stop()
        await other_port.stop()
    return results


def main() -> int:
    if not _in_private_namespace():
        print("refusing to run: not inside a private network namespace (only 'lo' expected)", file=sys.stderr)
        return 2
    print(json.dumps(asyncio.run(run_all())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
