"""Server-sent events from an upstream, read as untrusted input: one event at a time, each bounded.

The decoder follows the WHATWG rules the vendors' SDKs use: lines end in CR, LF or CRLF; `data:` lines of
one event are joined with newlines; a line starting with `:` is a comment; an empty line dispatches the
event. An event whose data would exceed `max_event_bytes` is refused before it is held whole.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from imagegate.core.errors import UpstreamError
from imagegate.providers.http import is_compressed

_LINE = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class ServerEvent:
    event: str  # "message" when the upstream named none
    data: str


async def server_events(response: aiohttp.ClientResponse, *, provider: str,
                        max_event_bytes: int) -> AsyncIterator[ServerEvent]:
    """The events of a `text/event-stream` answer, as they arrive."""
    if is_compressed(response):
        raise UpstreamError(f"The provider '{provider}' sent a compressed stream the gateway did not ask for.",
                            retryable=True)
    buffer = bytearray()
    scanned = 0  # where to look for the next line end: what came before holds none
    name, size = "", 0
    data: list[str] = []
    async for chunk in response.content.iter_any():
        buffer += chunk
        while (match := _LINE.search(buffer, scanned)) is not None:
            if match.group() == b"\r" and match.end() == len(buffer):
                break  # a CR at the end of what arrived may be the first half of a CRLF
            line = bytes(buffer[: match.start()])
            del buffer[: match.end()]
            scanned = 0
            if not line:
                if data:
                    yield ServerEvent(name or "message", "\n".join(data))
                name, data, size = "", [], 0
                continue
            field, _, value = line.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            if field == b"data":
                size += len(value)
                if size > max_event_bytes:
                    raise _oversized(provider, max_event_bytes)
                data.append(value.decode("utf-8", "replace"))
            elif field == b"event":
                name = value.decode("utf-8", "replace")
        else:
            scanned = len(buffer)
        if len(buffer) + size > max_event_bytes:
            raise _oversized(provider, max_event_bytes)
    if data:
        yield ServerEvent(name or "message", "\n".join(data))


def _oversized(provider: str, limit: int) -> UpstreamError:
    return UpstreamError(f"The provider '{provider}' sent a stream event larger than the {limit:,} bytes this "
                         "request can produce.", retryable=True)
