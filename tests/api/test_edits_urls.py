"""JSON image URLs reach the provider as bytes only through the safe fetcher."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp import web
from tests.conftest import Harness, png_bytes, start_harness

from imagegate.config import Settings
from imagegate.fetch.policy import FetchSettings


@pytest.fixture
async def origin() -> AsyncIterator[str]:
    """An image host on loopback: /a.png is an image, /page.png is HTML pretending to be one."""
    async def image(_: web.Request) -> web.Response:
        return web.Response(body=png_bytes((48, 48)), content_type="image/png")

    async def page(_: web.Request) -> web.Response:
        return web.Response(text="<html></html>", content_type="image/png")

    app = web.Application()
    app.router.add_get("/a.png", image)
    app.router.add_get("/page.png", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def harness_with(settings: Settings, fetch: FetchSettings) -> Harness:
    return await start_harness(replace(settings, fetch=fetch))


async def test_allow_listed_origin_is_fetched(settings: Settings, origin: str) -> None:
    port = int(origin.rsplit(":", 1)[1])
    h = await harness_with(settings, FetchSettings(allow_cidrs=("127.0.0.1/32",), allowed_ports=(port,)))
    try:
        r = await h.client.post("/v1/images/edits", headers=h.auth, json={
            "model": "local-edit", "prompt": "invert", "image_urls": [f"{origin}/a.png"],
            "response_format": "b64_json"})
        assert r.status_code == 200, r.text
        bad = await h.client.post("/v1/images/edits", headers=h.auth, json={
            "model": "local-edit", "prompt": "invert", "images": [{"image_url": f"{origin}/a.png"},
                                                                  {"image_url": f"{origin}/page.png"}]})
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "unsupported_image_format"
        assert bad.json()["error"]["param"] == "images[1].image_url"
    finally:
        await h.aclose()


async def test_loopback_refused_by_default(settings: Settings, origin: str) -> None:
    h = await harness_with(settings, FetchSettings())
    try:
        r = await h.client.post("/v1/images/edits", headers=h.auth, json={
            "model": "local-edit", "prompt": "invert", "image_url": f"{origin}/a.png"})
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["code"] == "invalid_image_url" and err["param"] == "image_url"
        assert "127.0.0.1" not in err["message"].replace(origin, "")
    finally:
        await h.aclose()
