"""The edge middleware on its own: request ids, the streaming body limit, the last-resort 500, and the
one observation of every request."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from imagegate.api.middleware import CLIENT_CLOSED, EdgeMiddleware


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int, float]] = []

    def __call__(self, scope: Scope, status: int, seconds: float) -> None:
        self.seen.append((scope["path"], status, seconds))


def client(app: Any, seen: Recorder, max_body: int = 1024) -> httpx.AsyncClient:
    edge = EdgeMiddleware(app, max_body=max_body, observe=seen)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=edge), base_url="http://edge.test")


def scope_of(path: str) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}


async def nothing() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


async def ok(scope: Scope, receive: Receive, send: Send) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def broken(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("a bug")


async def broken_midway(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    raise RuntimeError("a bug after the response began")


async def test_a_response_gets_a_request_id_and_is_observed_once() -> None:
    seen = Recorder()
    async with client(ok, seen) as c:
        response = await c.post("/v1/x", content=b"small")
    assert response.status_code == 201 and response.headers["x-request-id"].startswith("req_")
    assert [(path, status) for path, status, _ in seen.seen] == [("/v1/x", 201)]
    assert seen.seen[0][2] >= 0


async def test_an_unexpected_exception_is_the_500_envelope() -> None:
    seen = Recorder()
    async with client(broken, seen) as c:
        response = await c.get("/boom")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error" and "a bug" not in response.text
    assert response.headers["x-request-id"].startswith("req_")
    assert [status for _, status, _ in seen.seen] == [500]


async def test_an_exception_after_the_response_began_sends_no_second_response() -> None:
    seen, sent = Recorder(), []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await EdgeMiddleware(broken_midway, max_body=1024, observe=seen)(scope_of("/late"), nothing, send)
    assert [(m["type"], m.get("status")) for m in sent] == [("http.response.start", 200)]
    assert [status for _, status, _ in seen.seen] == [200]


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
async def test_a_body_over_the_limit_is_413(declared: bool) -> None:
    seen = Recorder()
    body = b"x" * 2048

    async def chunks() -> Any:
        yield body[:1000]
        yield body[1000:]

    async with client(ok, seen) as c:
        response = await c.post("/big", content=body if declared else chunks())
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    assert [status for _, status, _ in seen.seen] == [413]


async def test_a_request_cancelled_before_any_response_is_observed_as_client_closed() -> None:
    seen = Recorder()
    entered = asyncio.Event()

    async def waits(scope: Scope, receive: Receive, send: Send) -> None:
        entered.set()
        await asyncio.sleep(30)

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError("nothing is sent for a request whose client left")

    call = asyncio.create_task(EdgeMiddleware(waits, max_body=1024, observe=seen)(scope_of("/slow"), nothing, send))
    await entered.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert [(path, status) for path, status, _ in seen.seen] == [("/slow", CLIENT_CLOSED)]
