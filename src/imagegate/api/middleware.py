"""Pure-ASGI middleware: a request id on every response, a streaming body limit, a last-resort 500."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagegate.api.errors import error_response, internal_error_response
from imagegate.core.errors import TooLarge

log = logging.getLogger("imagegate.http")


class EdgeMiddleware:
    """Adds `x-request-id`, refuses bodies over `max_body` as they stream, and turns any unexpected
    exception into the OpenAI-style 500 envelope (never a bare traceback)."""

    def __init__(self, app: ASGIApp, *, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = "req_" + secrets.token_hex(12)
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                await self._reply(error_response(TooLarge(self._too_large())), scope, receive, send_with_id)
                return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise TooLarge(self._too_large())
            return message

        try:
            await self.app(scope, counted_receive, send_with_id)
        except TooLarge as exc:
            if not started:
                await self._reply(error_response(exc), scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error in %s %s (%s)", scope.get("method"), scope.get("path"), request_id)
            if not started:
                await self._reply(internal_error_response(), scope, receive, send_with_id)

    def _too_large(self) -> str:
        return f"The request body is larger than {self.max_body // (1024 * 1024)} MB."

    @staticmethod
    async def _reply(response: Any, scope: Scope, receive: Receive, send: Send) -> None:
        await response(scope, receive, send)
