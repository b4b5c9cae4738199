"""Server-sent-event streams as OpenAI-style image APIs send them, shared by the OpenAI and Azure OpenAI
emulators: stream records with per-event timestamps, pacing and gating, mid-stream failure injection and
client-disconnect detection.

An emulator subclasses :class:`StreamingEmulator` (a :class:`~.base.LoopbackEmulator`), builds a stream's frames
itself - (event name, JSON payload) pairs, the completed event last - and answers with
:meth:`StreamingEmulator._stream`, which

- writes each frame as ``event: NAME`` / one ``data:`` line of compact JSON / blank line (no ``id:`` lines, no
  ``[DONE]``) on a ``text/event-stream`` answer;
- paces the frames: ``latency`` spread evenly (``latency / events`` before the headers and between events)
  unless ``stream_interval`` is set (then ``latency`` before the headers and ``stream_interval`` seconds
  between events); ``stream_gate=True`` holds every event until :meth:`~StreamingEmulator.release_stream_events`;
- records the stream: a :class:`StreamRecord` in ``streams``, each frame written a :class:`StreamEvent` with
  ``written_at`` (``time.perf_counter()`` right after the frame was handed to the socket) and ``wall_time``;
- plays a queued mid-stream failure (``inject(kind, after_events=k)`` with a kind of :data:`STREAM_INJECTABLE`,
  or :meth:`~StreamingEmulator.fail_stream`): after k events an ``event: error`` frame
  (:func:`stream_error_payload`) and a clean close, an aborted connection, or silence with the connection open;
- notices a client that leaves while it waits or writes (within ``disconnect_poll`` seconds; 0 checks only
  when writing): the stream gets ``client_disconnected`` and the request joins ``client_disconnects``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import EllipsisType
from typing import Any, Self

from aiohttp import web

from .base import RECORD, LoopbackEmulator, RecordedRequest

__all__ = ["STREAM_INJECTABLE", "StreamEvent", "StreamFailure", "StreamRecord", "StreamingEmulator",
           "compact_json", "sse_frame", "stream_error_payload"]

#: Mid-stream failures for ``inject(kind, after_events=k)`` (streaming requests only).
STREAM_INJECTABLE = ("stream_error", "stream_disconnect", "stream_hang")


def compact_json(obj: Any) -> bytes:
    """JSON without spaces (``json.dumps`` with ``(",", ":")`` separators, ASCII only)."""
    return json.dumps(obj, separators=(",", ":")).encode()


def sse_frame(event: str, payload: Mapping[str, Any], dumps: Callable[[Any], bytes] = compact_json) -> bytes:
    """One SSE frame as OpenAI (and Azure) write it: ``event:`` line, one ``data:`` line of JSON, blank line.
    No ``id:``."""
    return b"event: " + event.encode() + b"\ndata: " + dumps(payload) + b"\n\n"


def stream_error_payload(message: str, code: str | None, type_: str = "server_error") -> dict[str, Any]:
    """The mid-stream error frame openai-python (``data.error``) and openai-node v7 (``event: error``) raise on."""
    return {"type": "error", "error": {"message": message, "type": type_, "param": None, "code": code}}


@dataclass
class StreamEvent:
    """One SSE frame the emulator wrote."""

    #: event name: ``image_edit.partial_image``, ``image_generation.completed``, ``error``, ...
    type: str
    #: 0-based position in its stream.
    index: int
    #: ``time.perf_counter()`` right after the frame was handed to the socket.
    written_at: float
    #: ``time.time()`` at the same moment.
    wall_time: float
    #: size of the frame on the wire (before chunked framing).
    nbytes: int


@dataclass
class StreamRecord:
    """A streamed answer (``stream`` true edit or generation) as the emulator wrote it."""

    request: RecordedRequest
    #: ``"edit"`` or ``"generation"``.
    operation: str
    #: the model answering: the request's model id (OpenAI), the deployment's model family (Azure).
    model: str
    #: the event names the stream sends when nothing goes wrong, in order.
    planned: list[str]
    #: ``time.perf_counter()`` when the 200 headers were written (None if the client left before).
    started_at: float | None = None
    events: list[StreamEvent] = field(default_factory=list)
    #: the completed event was written and the body closed cleanly.
    completed: bool = False
    #: ``"error"``, ``"disconnect"`` or ``"hang"`` when an injected stream failure played.
    injected: str | None = None
    client_disconnected: bool = False
    #: ``time.perf_counter()`` when the emulator noticed the client had gone.
    disconnected_at: float | None = None
    #: ``time.perf_counter()`` when the emulator stopped writing (body closed, aborted, or client gone).
    ended_at: float | None = None

    @property
    def event_types(self) -> list[str]:
        return [e.type for e in self.events]

    @property
    def write_times(self) -> list[float]:
        return [e.written_at for e in self.events]

    @property
    def gaps(self) -> list[float]:
        """Seconds between consecutive events."""
        return [b - a for a, b in itertools.pairwise(self.write_times)]


@dataclass
class StreamFailure:
    """A queued mid-stream failure: after ``after_events`` events, ``action`` (``error``, ``disconnect``,
    ``hang``) for the next ``times`` streams ``on`` a route (None: any route)."""

    action: str
    after_events: int
    times: int
    on: str | None
    message: str = "The server had an error while processing your request. Sorry about that!"
    code: str | None = "server_error"
    error_type: str = "server_error"


class StreamingEmulator(LoopbackEmulator):
    """A :class:`~.base.LoopbackEmulator` that can answer with SSE streams (module docstring).

    Arguments besides the base ones: ``stream_interval`` seconds between consecutive stream events (None: spread
    ``latency``); ``stream_gate`` holds each stream event until :meth:`release_stream_events` (settable);
    ``disconnect_poll`` how often (s) a waiting request checks whether its client has gone (0: only on writes).
    """

    #: one frame on the wire; an emulator may encode its payloads its own way.
    _sse_frame = staticmethod(sse_frame)

    def __init__(self, *, stream_interval: float | None = None, stream_gate: bool = False,
                 disconnect_poll: float = 0.02, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stream_interval, self.stream_gate, self.disconnect_poll = stream_interval, stream_gate, disconnect_poll
        #: every streamed answer, oldest first (when ``record``).
        self.streams: list[StreamRecord] = []
        #: requests whose client went away before the answer was complete (when ``record``).
        self.client_disconnects: list[RecordedRequest] = []
        self._stream_failures: list[StreamFailure] = []
        self._gate_permits = 0
        self._gate_event = asyncio.Event()

    async def start(self) -> Self:
        if self._runner is None:
            self._gate_event = asyncio.Event()
        return await super().start()

    # ------------------------------------------------------------------ test helpers
    @property
    def last_stream(self) -> StreamRecord | None:
        return self.streams[-1] if self.streams else None

    def stream_for(self, request: RecordedRequest | str) -> StreamRecord | None:
        """The stream answering a recorded request (or a request id, as the answer's request-id header
        carries it)."""
        rid = request if isinstance(request, str) else request.request_id
        return next((s for s in self.streams if s.request.request_id == rid), None)

    def release_stream_events(self, count: int = 1) -> None:
        """With ``stream_gate``: let ``count`` more stream events (of any stream) be written."""
        self._gate_permits += count
        self._gate_event.set()

    def fail_stream(self, after_events: int = 0, *, action: str = "error", message: str | None = None,
                    code: str | None = "server_error", error_type: str = "server_error", times: int = 1,
                    on: str | EllipsisType | None = ...) -> None:
        """Queue a mid-stream failure for the next ``times`` streams ``on`` a route (default
        :attr:`failure_route`; None: any): after ``after_events`` events, ``action`` = ``error`` (an
        ``event: error`` frame with ``message``/``code``/``error_type``, then a clean close), ``disconnect``
        (abort the connection) or ``hang`` (send nothing more, keep the connection open). ``after_events`` at
        or past the number of events plays it after the completed event."""
        if action not in ("error", "disconnect", "hang"):
            raise ValueError("action must be 'error', 'disconnect' or 'hang'")
        if after_events < 0:
            raise ValueError("after_events must be >= 0")
        route = self.failure_route if isinstance(on, EllipsisType) else on
        failure = StreamFailure(action, after_events, times, route, code=code, error_type=error_type)
        if message is not None:
            failure.message = message
        self._stream_failures.append(failure)

    def inject(self, kind: str, *, times: int = 1, retry_after: float | None = None, delay: float = 0.0,
               on: str | EllipsisType | None = ..., after_events: int = 0) -> None:
        """Queue a realistic failure: one of the emulator's ``INJECTABLE`` kinds (answered instead of the
        request), or one of :data:`STREAM_INJECTABLE` (played ``after_events`` events into the next stream;
        only streaming requests consume those)."""
        if kind in STREAM_INJECTABLE:
            self.fail_stream(after_events, action=kind.removeprefix("stream_"), times=times, on=on)
            return
        super().inject(kind, times=times, retry_after=retry_after, delay=delay, on=on)

    @property
    def pending_failures(self) -> int:
        return super().pending_failures + sum(f.times for f in self._stream_failures)

    def reset_failures(self) -> None:
        super().reset_failures()
        self._stream_failures.clear()

    # ------------------------------------------------------------------ waiting and noticing clients that leave
    async def _wait(self, request: web.Request, seconds: float) -> bool:
        """Wait ``seconds`` (cut short by ``stop()``); False as soon as the client has gone."""
        if request.transport is None:
            return False
        if seconds <= 0:
            return True
        poll = self.disconnect_poll
        if poll <= 0:
            if math.isfinite(seconds):
                await self._sleep(seconds)
            else:
                await self._closing.wait()
            return request.transport is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while not self._closing.is_set():
            left = end - loop.time()
            if left <= 0:
                break
            await asyncio.sleep(min(left, poll))
            if request.transport is None:
                return False
        return True

    def _note_disconnect(self, request: web.Request, stream: StreamRecord | None = None) -> None:
        """The client of ``request`` (and of ``stream``, if any) has gone."""
        rec = request[RECORD]
        if self.record and all(r is not rec for r in self.client_disconnects):
            self.client_disconnects.append(rec)
        if stream is not None and not stream.client_disconnected:
            stream.client_disconnected = True
            stream.disconnected_at = time.perf_counter()

    # ------------------------------------------------------------------ streaming
    def _take_stream_failure(self, route: str) -> StreamFailure | None:
        f = next((f for f in self._stream_failures if f.on is None or f.on == route), None)
        if f is not None:
            f.times -= 1
            if f.times <= 0:
                self._stream_failures.remove(f)
        return f

    async def _write_event(self, request: web.Request, resp: web.StreamResponse, record: StreamRecord, name: str,
                           frame: bytes) -> bool:
        """Write one SSE frame and time it; False if the client has gone."""
        if request.transport is None:
            return False
        try:
            await resp.write(frame)
        except ConnectionError:
            return False
        record.events.append(StreamEvent(name, len(record.events), time.perf_counter(), time.time(), len(frame)))
        return True

    async def _await_gate(self, request: web.Request) -> bool:
        """With ``stream_gate``: wait for a :meth:`release_stream_events` permit; False if the client left."""
        poll = self.disconnect_poll if self.disconnect_poll > 0 else 0.05
        while self._gate_permits <= 0:
            if request.transport is None:
                return False
            if self._closing.is_set():
                return True
            self._gate_event.clear()
            try:
                await asyncio.wait_for(self._gate_event.wait(), poll)
            except TimeoutError:
                pass
        self._gate_permits -= 1
        return True

    async def _play_stream_failure(self, request: web.Request, resp: web.StreamResponse, record: StreamRecord,
                                   failure: StreamFailure) -> None:
        record.injected = failure.action
        if failure.action == "error":
            payload = stream_error_payload(failure.message, failure.code, failure.error_type)
            if await self._write_event(request, resp, record, "error", self._sse_frame("error", payload)):
                try:
                    await resp.write_eof()
                except ConnectionError:
                    self._note_disconnect(request, record)
            else:
                self._note_disconnect(request, record)
        elif failure.action == "disconnect":
            if request.transport is not None:
                request.transport.abort()
        elif not await self._wait(request, math.inf):  # hang: until stop() or the client gives up
            self._note_disconnect(request, record)

    async def _stream(self, request: web.Request, frames: list[tuple[str, dict[str, Any]]], *, operation: str,
                      model: str, route: str, headers: Mapping[str, str]) -> web.StreamResponse:
        """Answer ``request`` with ``frames`` (event name, payload; the completed event last) as an event
        stream with ``headers``, recorded as ``operation`` by ``model``; a stream failure queued for ``route``
        plays in it."""
        rec = request[RECORD]
        record = StreamRecord(rec, operation, model, [name for name, _ in frames])
        if self.record:
            self.streams.append(record)
        failure = self._take_stream_failure(route)
        paced = self.stream_interval is not None
        gap = self.stream_interval if self.stream_interval is not None else self.latency / len(frames)
        if not await self._wait(request, self.latency if paced else gap):
            record.ended_at = time.perf_counter()
            self._note_disconnect(request, record)
            raise asyncio.CancelledError
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream; charset=utf-8",
                                                       "Cache-Control": "no-cache", **headers})
        self._stamp(resp, rec.request_id, time.perf_counter())
        try:
            await resp.prepare(request)
        except ConnectionError:
            self._note_disconnect(request, record)
            raise asyncio.CancelledError from None
        record.started_at = time.perf_counter()
        try:
            for i, (name, payload) in enumerate(frames):
                if failure is not None and i == failure.after_events:
                    await self._play_stream_failure(request, resp, record, failure)
                    return resp
                if (i > 0 and not await self._wait(request, gap)) or (
                        self.stream_gate and not await self._await_gate(request)):
                    self._note_disconnect(request, record)
                    return resp
                if not await self._write_event(request, resp, record, name, self._sse_frame(name, payload)):
                    self._note_disconnect(request, record)
                    return resp
            if failure is not None:  # after_events >= the number of events: after the completed event
                await self._play_stream_failure(request, resp, record, failure)
                return resp
            try:
                await resp.write_eof()
            except ConnectionError:
                self._note_disconnect(request, record)
                return resp
            record.completed = True
            return resp
        finally:
            record.ended_at = time.perf_counter()
