"""What every upstream emulator shares: a real aiohttp server on a loopback port, request recording, queued
failures (canned answers, hangs, dropped connections), latency, and strict multipart reading.

An emulator subclasses :class:`LoopbackEmulator` (one that answers with server-sent events subclasses
:class:`.streams.StreamingEmulator`, which adds them), adds its routes in ``_routes`` and its canned failures in
``_canned``, and raises :class:`Reject` (or a subclass that builds the vendor's error body) from a handler
to answer with an error; :func:`json_kind` names a JSON value's type as OpenAI-style errors do. Everything
that makes it strict — which fields, values and images the real service refuses — stays in the emulator's own
module.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import EllipsisType
from typing import Any, ClassVar, Self

from aiohttp import BodyPartReader, web
from aiohttp.multipart import content_disposition_filename, parse_content_disposition
from multidict import CIMultiDict

__all__ = ["RECORD", "Failure", "LoopbackEmulator", "MalformedMultipart", "Part", "RecordedRequest", "Reject",
           "json_kind", "read_multipart"]

#: One form part: (field name, filename, Content-Type, bytes for a file | str for a text field).
Part = tuple[str, str | None, str | None, bytes | str]
#: A canned failure: (status, body, headers); a dict or list body is sent as JSON, text as HTML.
Canned = tuple[int, Any, dict[str, str]]


@dataclass
class RecordedRequest:
    """One request as an emulator received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    content_type: str
    #: text form fields; a repeated field becomes a list of its values, in order.
    fields: dict[str, Any] = field(default_factory=dict)
    #: file parts: (field_name, filename, content_type, bytes), in wire order.
    files: list[tuple[str, str | None, str | None, bytes]] = field(default_factory=list)
    #: decoded JSON body (JSON requests only).
    json: Any = None
    request_id: str = ""
    #: HTTP status the emulator answered with (None while in flight / if the connection was dropped).
    status: int | None = None
    received_at: float = 0.0

    def files_named(self, name: str) -> list[tuple[str, str | None, str | None, bytes]]:
        return [f for f in self.files if f[0] == name]

    def add_parts(self, parts: Iterable[Part]) -> None:
        """Record form parts: files in wire order, text fields by name."""
        for name, filename, ctype, value in parts:
            if isinstance(value, bytes):
                self.files.append((name, filename, ctype, value))
                continue
            prev = self.fields.get(name)
            if prev is None:
                self.fields[name] = value
            elif isinstance(prev, list):
                prev.append(value)
            else:
                self.fields[name] = [prev, value]


@dataclass
class Failure:
    """A queued answer for the next ``times`` requests ``on`` a route (None: any route)."""

    status: int
    body: Any
    headers: dict[str, str]
    times: int
    on: str | None
    delay: float = 0.0
    content_type: str | None = None  # default: JSON for a dict or list body, HTML for text
    action: str = "respond"  # "respond" | "hang" | "disconnect"


class Reject(Exception):
    """Raised by a handler: answer with this status and JSON body (the vendor's error shape)."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, dict(headers or {})


#: (type, name) in the order :func:`json_kind` tries them (bool before int: a bool is an int).
_JSON_KINDS: tuple[tuple[type, str], ...] = ((bool, "a boolean"), (int, "an integer"), (float, "a decimal"),
                                             (str, "a string"), (list, "an array"), (dict, "an object"))


def json_kind(value: Any) -> str:
    """A JSON value's type as OpenAI-style errors name it (``an integer``, ``a string``, ``an array``, ...)."""
    if value is None:
        return "null"
    return next((name for kind, name in _JSON_KINDS if isinstance(value, kind)), "an unknown value")


class MalformedMultipart(ValueError):
    """The body is not a well-formed multipart/form-data body."""


RECORD: web.RequestKey[RecordedRequest] = web.RequestKey("emulator_record", RecordedRequest)

_CD_RE = re.compile(r'form-data; name="([^"\\%]*)"(?:; filename="([^"\\%]*)")?')


def _content_disposition(header: str | None) -> tuple[str, str | None]:
    """(name, filename) of a form-data part.

    Fast path for the plain ``form-data; name="x"; filename="y"`` shape every common client sends; anything
    else (RFC 5987 ``filename*``, escapes, odd spacing) goes through aiohttp's full parser, which is correct
    but costs ~100 us per call.
    """
    if header is not None:
        m = _CD_RE.fullmatch(header)
        if m is not None:
            return m.group(1), m.group(2)
    disptype, params = parse_content_disposition(header)
    name = content_disposition_filename(params, "name")
    if disptype != "form-data" or name is None:
        raise ValueError("part without a form-data name")
    return name, content_disposition_filename(params, "filename")


async def read_multipart(request: web.Request) -> list[Part]:
    """All parts in wire order; raises :class:`MalformedMultipart` for anything that is not form-data."""
    parts: list[Part] = []
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise ValueError("nested multipart")
            name, filename = _content_disposition(part.headers.get("Content-Disposition"))
            data = bytes(await part.read(decode=False))
            ctype = part.headers.get("Content-Type")
            if filename is not None:
                parts.append((name, filename, ctype, data))
            else:
                parts.append((name, None, ctype, data.decode(part.get_charset("utf-8"))))
    except (ValueError, AssertionError, LookupError, UnicodeDecodeError, RuntimeError, Warning) as exc:
        raise MalformedMultipart(str(exc)) from None
    return parts


class LoopbackEmulator:
    """An upstream played by a real HTTP server on 127.0.0.1 (an ephemeral port unless one is given).

    Arguments shared by every emulator: ``latency`` seconds before a successful answer (settable);
    ``hang`` never answers (until ``stop()``), for client-timeout tests; ``record`` keeps ``requests``
    (turn off for load tests).
    """

    #: the route ``fail_next`` and ``inject`` aim at when no ``on`` is given.
    failure_route: ClassVar[str | None] = None
    client_max_size: ClassVar[int] = 1024 * 1024 * 1024
    shutdown_timeout: ClassVar[float] = 1.0

    def __init__(self, *, latency: float = 0.0, hang: bool = False, host: str = "127.0.0.1", port: int = 0,
                 record: bool = True) -> None:
        self.latency, self.hang = latency, hang
        self.host, self.port = host, port
        self.record = record
        #: every request received (all routes), oldest first.
        self.requests: list[RecordedRequest] = []
        self._urls: dict[str, bytes] = {}
        self._failures: list[Failure] = []
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    # ------------------------------------------------------------------ what an emulator provides
    def _routes(self, router: web.UrlDispatcher) -> None:
        raise NotImplementedError

    def _canned(self, kind: str, retry_after: float | None) -> Canned:
        """The failure ``inject(kind)`` queues; unknown kinds raise ValueError."""
        raise ValueError(f"unknown failure kind {kind!r}")

    def _shutting_down(self) -> Reject:
        """The answer a hanging request gets when the emulator stops."""
        return Reject(503, {"error": "Emulator shutting down."})

    def _new_request_id(self) -> str:
        return str(uuid.uuid4())

    def _stamp(self, response: web.StreamResponse, request_id: str, started: float) -> None:
        """Add the vendor's response headers (request id, timings) to every answer."""

    def _reject_response(self, exc: Reject) -> web.Response:
        return web.Response(text=json.dumps(exc.body), status=exc.status, headers=exc.headers,
                            content_type="application/json")

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """Server root, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> Self:
        if self._runner is not None:
            return self
        self._closing = asyncio.Event()
        app = web.Application(middlewares=[self._middleware], client_max_size=self.client_max_size)
        self._routes(app.router)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=self.shutdown_timeout)
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port).start()
        if runner.addresses:
            self.port = runner.addresses[0][1]
        self._runner = runner
        return self

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            self._closing.set()  # wakes hanging and sleeping handlers
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ test helpers
    def register_url(self, url: str, data: bytes) -> None:
        """Make an http(s) image reference resolvable (an emulator never touches the network)."""
        self._urls[url] = bytes(data)

    def fail_next(self, status: int, body: Any, headers: Mapping[str, str] | None = None, times: int = 1, *,
                  on: str | EllipsisType | None = ..., delay: float = 0.0, content_type: str | None = None) -> None:
        """Answer the next ``times`` requests ``on`` a route (default :attr:`failure_route`; None: any route)
        with this response, after the auth check. A JSON body may hold ``{request_id}``."""
        route = self.failure_route if isinstance(on, EllipsisType) else on
        self._failures.append(Failure(status, body, dict(headers or {}), times, route, delay, content_type))

    def inject(self, kind: str, *, times: int = 1, retry_after: float | None = None, delay: float = 0.0,
               on: str | EllipsisType | None = ...) -> None:
        """Queue a realistic failure: ``hang``, ``disconnect``, or one of the emulator's canned kinds."""
        route = self.failure_route if isinstance(on, EllipsisType) else on
        if kind in ("hang", "disconnect"):
            self._failures.append(Failure(0, None, {}, times, route, delay, action=kind))
            return
        status, body, headers = self._canned(kind, retry_after)
        self._failures.append(Failure(status, body, headers, times, route, delay))

    @property
    def pending_failures(self) -> int:
        return sum(f.times for f in self._failures)

    def reset_failures(self) -> None:
        self._failures.clear()

    # ------------------------------------------------------------------ plumbing
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.perf_counter()
        rec = RecordedRequest(request.method, request.path, dict(request.query), CIMultiDict(request.headers),
                              request.content_type, request_id=self._new_request_id(), received_at=time.time())
        if self.record:
            self.requests.append(rec)
        request[RECORD] = rec
        try:
            response: web.StreamResponse = await handler(request)
        except Reject as exc:
            response = self._reject_response(exc)
        if not response.prepared:
            self._stamp(response, rec.request_id, started)
        rec.status = response.status
        return response

    async def _sleep(self, seconds: float) -> None:
        """Wait, but no longer than until the emulator stops."""
        if seconds > 0:
            try:
                await asyncio.wait_for(self._closing.wait(), seconds)
            except TimeoutError:
                pass

    async def _hang(self) -> web.StreamResponse:
        """Never answer (until the emulator stops)."""
        await self._closing.wait()
        raise self._shutting_down()

    async def _failure(self, request: web.Request, on: str, **placeholders: str) -> web.StreamResponse | None:
        """Play the first failure queued for route ``on``, if any; JSON bodies get ``{request_id}`` and
        ``placeholders`` filled in."""
        f = next((f for f in self._failures if f.on is None or f.on == on), None)
        if f is None:
            return None
        f.times -= 1
        if f.times <= 0:
            self._failures.remove(f)
        await self._sleep(f.delay)
        if f.action == "hang":
            return await self._hang()
        if f.action == "disconnect":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        if isinstance(f.body, dict | list):
            text = json.dumps(f.body).replace("{request_id}", request[RECORD].request_id)
            for name, value in placeholders.items():
                text = text.replace(f"{{{name}}}", value)
            data, ctype = text.encode(), f.content_type or "application/json"
        else:
            data = f.body.encode() if isinstance(f.body, str) else bytes(f.body)
            ctype = f.content_type or "text/html"
        return web.Response(body=data, status=f.status, headers=f.headers, content_type=ctype)
