"""Pure-ASGI middleware: a request id on every response, a streaming body limit and read timeout, a
last-resort 500, and one observation (the routed scope, status and duration) of every request."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagegate.api.errors import error_response, internal_error_response
from imagegate.core.errors import RequestTimeout, TooLarge

log = logging.getLogger("imagegate.http")
CLIENT_CLOSED = 499  # the status observed for a request whose client left before any response began

Observe = Callable[[Scope, int, float], None]


class EdgeMiddleware:
    """Adds `x-request-id`, refuses bodies over `max_body` as they stream, answers 408 to a body that goes
    `body_timeout` seconds without a byte, turns any unexpected exception into the OpenAI-style 500
    envelope (never a bare traceback), and tells `observe` how each request ended."""

    def __init__(self, app: ASGIApp, *, max_body: int, body_timeout: float = 30.0,
                 observe: Observe | None = None) -> None:
        self.app = app
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        request_id = "req_" + secrets.token_hex(12)
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self._guarded(scope, receive, send_with_id, lambda: status is not None)
        finally:
            if self.observe is not None:
                self.observe(scope, CLIENT_CLOSED if status is None else status, time.perf_counter() - began)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, started: Callable[[], bool]) -> None:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                await self._reply(error_response(TooLarge(self._too_large())), scope, receive, send)
                return
        received = 0
        body_done = False

        async def counted_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # what is left to receive is the client leaving, whenever it does
                return await receive()
            try:
                async with asyncio.timeout(self.body_timeout):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(f"The request body stalled: nothing arrived for {self.body_timeout:g} s.")\
                    from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise TooLarge(self._too_large())
                body_done = not message.get("more_body", False)
            return message

        try:
            await self.app(scope, counted_receive, send)
        except (TooLarge, RequestTimeout) as exc:
            if not started():
                await self._reply(error_response(exc), scope, receive, send)
        except Exception:
            log.exception("unhandled error in %s %s (%s)", scope.get("method"), scope.get("path"),
                          scope["state"]["request_id"])
            if not started():
                await self._reply(internal_error_response(), scope, receive, send)

    def _too_large(self) -> str:
        return f"The request body is larger than {self.max_body // (1024 * 1024)} MB."

    @staticmethod
    async def _reply(response: Any, scope: Scope, receive: Receive, send: Send) -> None:
        await response(scope, receive, send)
