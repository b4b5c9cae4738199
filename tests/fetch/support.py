"""Test doubles for the fetcher: a raw loopback origin, a fake resolver, a connect tripwire, images.

Shared by the fixtures in conftest.py and by netns_cases.py (which runs in a private network namespace),
so nothing here depends on pytest.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import random
import socket
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from PIL import Image

from imagegate.core.errors import GatewayError
from imagegate.fetch import FetchSettings

PUBLIC = "127.0.0.2"  # the test origin; "public" only under the test policy
INTERNAL = "127.0.0.3"  # an internal service that must never be reached
TEST_POLICY_CIDRS = (f"{PUBLIC}/32",)

NAMES: dict[str, list[str]] = {
    "img.test": [PUBLIC],
    "private.test": ["10.0.0.1"],
    "loopback.test": ["127.0.0.1"],
    "internal.test": [INTERNAL],
    "metadata.test": ["169.254.169.254"],
    "v6loop.test": ["::1"],
    "mapped.test": [f"::ffff:{PUBLIC}"],
    "mixed.test": [PUBLIC, "10.0.0.1"],
    "mixed6.test": [PUBLIC, "fd00::1"],
    "empty.test": [],
}


def settings_for(port: int, **overrides: Any) -> FetchSettings:
    """Small limits and short deadlines, so that the hostile cases run fast."""
    values: dict[str, Any] = {
        "allowed_ports": (port,), "timeout": 5.0, "max_image_bytes": 256 * 1024,
        "max_total_bytes": 600 * 1024, "spool_memory_bytes": 32 * 1024,
    }
    values.update(overrides)
    return FetchSettings(**values)


async def refused(fetch: Callable[..., Awaitable[Any]], *urls: Any, **kwargs: Any) -> GatewayError:
    """Run a fetch that must fail; return the error."""
    try:
        await fetch(*urls, **kwargs)
    except GatewayError as exc:
        return exc
    raise AssertionError(f"fetching {urls} did not fail")


# --- images ----------------------------------------------------------------------------------------
def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (32, 32), mode: str = "RGBA",
                noise: bool = False, **save: Any) -> bytes:
    if noise:
        img = Image.frombytes(mode, size, random.Random(0).randbytes(size[0] * size[1] * len(mode)))
    else:
        img = Image.new(mode, size, (200, 30, 30, 255)[: len(mode)] if mode not in ("L", "P") else 7)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


PNG = image_bytes("PNG")
JPEG = image_bytes("JPEG", mode="RGB")
WEBP = image_bytes("WEBP", mode="RGB")


# --- the origin ------------------------------------------------------------------------------------
@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    local: tuple[str, int]  # the address the client dialled
    reader: asyncio.StreamReader = field(repr=False)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


Handler = Callable[[Request, asyncio.StreamWriter], Awaitable[None]]


def head(status: int = 200, headers: Iterable[tuple[str, str]] = (), reason: str = "X") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers), "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def reply(body: bytes = b"", status: int = 200, headers: Iterable[tuple[str, str]] = (),
          content_type: str = "image/png", length: int | None = None) -> Handler:
    """A plain response; `length` overrides (lies about) Content-Length."""
    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        declared = len(body) if length is None else length
        hs = [("Content-Type", content_type), ("Content-Length", str(declared)), *headers]
        writer.write(head(status, hs) + body)
        await writer.drain()
    return handler


def redirect(location: str, status: int = 302, headers: Iterable[tuple[str, str]] = ()) -> Handler:
    return reply(b"", status, [("Location", location), *headers], content_type="text/plain")


def chunked(total: int, piece: int = 64 * 1024, prefix: bytes = PNG,
            headers: Iterable[tuple[str, str]] = ()) -> Handler:
    """A chunked body of `total` bytes (no Content-Length): `prefix`, then zeros."""
    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(head(200, [("Content-Type", "image/png"), ("Transfer-Encoding", "chunked"), *headers]))
        for start in range(0, total, piece):
            end = min(start + piece, total)
            data = prefix[start:end]
            data += b"\0" * (end - start - len(data))
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    return handler


def drip(body: bytes, interval: float) -> Handler:
    """Headers (with an honest Content-Length) at once, then one byte every `interval` seconds."""
    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(head(200, [("Content-Type", "image/png"), ("Content-Length", str(len(body)))]))
        for i in range(len(body)):
            await writer.drain()
            await asyncio.sleep(interval)
            writer.write(body[i:i + 1])
    return handler


def stall(before: bytes = b"") -> Handler:
    """Send `before` (e.g. the headers and a few bytes), then nothing until the client goes away."""
    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(before)
        await writer.drain()
        while await request.reader.read(1024):
            pass
    return handler


def raw(data: bytes) -> Handler:
    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()
    return handler


def slow(delay: float, then: Handler) -> Handler:
    async def handler(request: Request, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(delay)
        await then(request, writer)
    return handler


@dataclass
class Origin:
    """A deliberately raw HTTP/1.1 server: one request per connection, full control over the bytes."""

    host: str = "127.0.0.2"
    port: int = 0
    routes: dict[str, Handler] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    active: int = 0
    max_active: int = 0
    _servers: list[asyncio.Server] = field(default_factory=list)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    async def start(self, *hosts: str) -> Origin:
        for host in hosts or (self.host,):
            server = await asyncio.start_server(self._serve, host, self.port, reuse_address=True)
            self.port = server.sockets[0].getsockname()[1]
            self._servers.append(server)
        return self

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def route(self, path: str, handler: Handler) -> str:
        self.routes[path] = handler
        return path

    def hits(self, path: str | None = None) -> list[Request]:
        return [r for r in self.requests if path is None or r.path == path]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            raw_head = await reader.readuntil(b"\r\n\r\n")
            line, *header_lines = raw_head.decode("latin-1").split("\r\n")
            method, target, _ = line.split(" ", 2)
            headers: dict[str, str] = {}
            for h in filter(None, header_lines):
                name, _, value = h.partition(":")
                key = name.strip().lower()
                headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
            sockname = writer.get_extra_info("sockname")
            local = (str(sockname[0]).removeprefix("::ffff:"), int(sockname[1]))
            request = Request(method, target, headers, local, reader)
            self.requests.append(request)
            handler = self.routes.get(request.path, reply(b"not found", 404, content_type="text/plain"))
            await handler(request, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or the origin is stopping: either way this request is over
        finally:
            self.active -= 1
            self._tasks.discard(task)
            writer.close()


# --- the resolver ----------------------------------------------------------------------------------
class FakeResolver(AbstractResolver):
    """Maps test names to addresses. A name given several answers returns them in turn (rebinding)."""

    def __init__(self, answers: dict[str, list[str] | list[list[str]]] | None = None) -> None:
        self._answers: dict[str, list[list[str]]] = {}
        self.queries: list[str] = []
        self.closed = False
        for name, answer in (answers or {}).items():
            self.add(name, answer)

    def add(self, name: str, answer: list[str] | list[list[str]]) -> None:
        turns = [a for a in answer if isinstance(a, list)]
        self._answers[name] = turns if turns else [[a for a in answer if isinstance(a, str)]]

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        self.queries.append(host)
        turns = self._answers.get(host.rstrip("."))
        if turns is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answer = turns.pop(0) if len(turns) > 1 else turns[0]
        return [ResolveResult(hostname=host, host=a, port=port,
                              family=socket.AF_INET6 if ":" in a else socket.AF_INET, proto=0, flags=0)
                for a in answer]

    async def close(self) -> None:
        self.closed = True


# --- the tripwire ----------------------------------------------------------------------------------
class Tripwire:
    """Records every connect() and refuses (before any packet) those not to an allowed address.

    Also refuses name lookups through getaddrinfo, so a test cannot send a DNS query either.
    """

    def __init__(self, allowed: Iterable[str] | None = ("127.0.0.2",)) -> None:
        self.allowed = None if allowed is None else set(allowed)  # None: record only
        self.dialled: list[tuple[str, int]] = []
        self.violations: list[str] = []
        self._saved: dict[str, Any] = {}

    def _check(self, address: Any) -> None:
        host, port = str(address[0]), int(address[1])
        self.dialled.append((host, port))
        if self.allowed is not None and host not in self.allowed:
            self.violations.append(f"connect to {host}:{port}")
            raise ConnectionRefusedError(111, "tripwire: connect to a non-allowed address")

    @contextlib.contextmanager
    def armed(self) -> Iterator[Tripwire]:
        wire = self
        real_getaddrinfo = socket.getaddrinfo

        def connect(sock: socket.socket, address: Any) -> None:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                wire._check(address)
            return super(socket.socket, sock).connect(address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                wire._check(address)
            return super(socket.socket, sock).connect_ex(address)

        def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0,
                        flags: int = 0) -> Any:
            try:
                return real_getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
            except socket.gaierror:
                wire.violations.append(f"name lookup of {host!r}")
                raise

        originals = {"connect": socket.socket.__dict__.get("connect"),
                     "connect_ex": socket.socket.__dict__.get("connect_ex")}
        socket.socket.connect = connect  # type: ignore[method-assign, assignment]
        socket.socket.connect_ex = connect_ex  # type: ignore[method-assign, assignment]
        socket.getaddrinfo = getaddrinfo
        try:
            yield self
        finally:
            socket.getaddrinfo = real_getaddrinfo
            for name, original in originals.items():
                if original is None:
                    delattr(socket.socket, name)
                else:
                    setattr(socket.socket, name, original)

    def reset(self) -> None:
        self.dialled.clear()
