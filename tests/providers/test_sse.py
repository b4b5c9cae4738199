"""Reading an upstream's server-sent events: the WHATWG line rules, one bounded event at a time."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from imagegate.core.errors import UpstreamError
from imagegate.providers.http import UpstreamSession
from imagegate.providers.sse import ServerEvent, server_events


async def events_of(chunks: list[bytes], max_event_bytes: int = 1000, **headers: str) -> list[ServerEvent]:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **headers})
        await response.prepare(request)
        for chunk in chunks:
            await response.write(chunk)
        return response

    app = web.Application()
    app.router.add_get("/", handler)
    session = UpstreamSession(timeout=5)
    async with TestServer(app, host="127.0.0.1") as server:
        try:
            async with session.get().get(server.make_url("/")) as response:
                return [e async for e in server_events(response, provider="p", max_event_bytes=max_event_bytes)]
        finally:
            await session.aclose()


async def test_events_split_across_chunks_and_line_endings() -> None:
    chunks = [b": keep-alive\r", b"\nevent: a\r\ndata: {\"x\"", b": 1}\r", b"\n\r\n", b"data: two\ndata: lines\n\n",
              b"event: last\rdata: 3\r\r", b"data: unterminated"]
    assert await events_of(chunks) == [ServerEvent("a", '{"x": 1}'), ServerEvent("message", "two\nlines"),
                                       ServerEvent("last", "3")]  # a line cut off by the end is no event


async def test_an_event_without_data_is_not_dispatched() -> None:
    assert await events_of([b"event: ping\n\n", b"data: x\n\n"]) == [ServerEvent("message", "x")]


@pytest.mark.parametrize("chunks", [[b"data: " + b"a" * 2000 + b"\n\n"], [b"data: " + b"a" * 900 + b"\n",
                                                                        b"data: " + b"b" * 900 + b"\n\n"],
                                    [b"a" * 600, b"a" * 600]])
async def test_an_event_over_the_cap_is_refused(chunks: list[bytes]) -> None:
    with pytest.raises(UpstreamError, match="larger than"):
        await events_of(chunks)


async def test_a_compressed_stream_is_refused() -> None:
    with pytest.raises(UpstreamError, match="compressed"):
        await events_of([b"data: x\n\n"], **{"Content-Encoding": "gzip"})
