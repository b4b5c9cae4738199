"""A streamed image job as server-sent events, in OpenAI's shape.

`event: image_edit.partial_image` (or `image_generation.partial_image`) for each partial image, then
`…completed` with the usage, each sent the moment it arrived. A failure after the first event can no
longer change the status: it is sent as `event: error` with the usual error envelope in `data` (which
the OpenAI SDKs raise), and the stream ends. No `id:` lines are sent: the SDKs need none.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from imagegate.api.errors import error_payload
from imagegate.core.delivery import b64
from imagegate.core.errors import GatewayError
from imagegate.core.jobs import Operation, StreamEvent
from imagegate.core.service import ImageStream

log = logging.getLogger("imagegate.http")
PREFIXES: dict[Operation, str] = {"edit": "image_edit", "generate": "image_generation"}
_NO_USAGE = {"total_tokens": 0, "input_tokens": 0, "output_tokens": 0,
             "input_tokens_details": {"text_tokens": 0, "image_tokens": 0}}


def frame(event: str, data: Mapping[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class EventStreamResponse(StreamingResponse):
    """The events of `stream`; the stream is closed (its hold released unless it settled, its upstream call
    ended) however the answer ends, the client leaving included."""

    def __init__(self, stream: ImageStream, operation: Operation, options: Mapping[str, Any]) -> None:
        self._stream = stream
        self._prefix = PREFIXES[operation]
        self._defaults = {"size": options.get("size", "auto"), "quality": options.get("quality", "auto"),
                          "background": options.get("background", "auto"),
                          "output_format": options.get("output_format", "png")}
        super().__init__(self._frames(), media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                                  "X-Billing-Transaction-ID": stream.billing_transaction_id})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._stream.aclose()

    async def _frames(self) -> AsyncIterator[bytes]:
        try:
            async for event in self._stream:
                kind, data = self._event(event)
                data["b64_json"] = await b64(event.image)
                yield frame(kind, data)
        except GatewayError as exc:
            yield frame("error", {"type": "error", **error_payload(exc)})
        except Exception:
            log.exception("a stream failed")
            yield frame("error", {"type": "error", "error": {
                "message": "The gateway failed while streaming.", "type": "server_error",
                "code": "internal_error", "param": None}})

    def _event(self, event: StreamEvent) -> tuple[str, dict[str, Any]]:
        kind = f"{self._prefix}.{'completed' if event.final else 'partial_image'}"
        data: dict[str, Any] = {"type": kind, "created_at": event.created_at or int(time.time()),
                                **self._defaults, **event.echo}
        if event.final:
            data["usage"] = event.usage.to_json() if event.usage is not None else _NO_USAGE
            data["billing_transaction_id"] = self._stream.billing_transaction_id
        else:
            data["partial_image_index"] = event.index
        return kind, data
