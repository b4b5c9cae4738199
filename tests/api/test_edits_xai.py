"""Edits through an `xai` route, as the gateway's client sees them and as the books record them.

The adapter's wire details are tested in tests/providers/test_xai.py; here the real app runs in-process
against the strict xAI emulator, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from PIL import Image
from tests.conftest import Harness, png_bytes, running, settings_on
from tests.emulators.xai_emulator import XaiEmulator

from imagegate.config import ProviderSettings
from imagegate.fetch.policy import FetchSettings

KEY = "xai-upstream-key"
MODELS = ("grok-imagine-image", "grok-imagine-image-quality", "grok-imagine-image-pro")


class ImageHost:
    """A loopback image host the gateway's fetcher is allowed to reach; counts what it serves."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _image(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        return web.Response(body=png_bytes((48, 32)), content_type="image/png")

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/{name}", self._image)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port: int = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def emu() -> AsyncIterator[XaiEmulator]:
    async with XaiEmulator(KEY) as emulator:
        yield emulator


@pytest.fixture
async def host() -> AsyncIterator[ImageHost]:
    image_host = ImageHost()
    await image_host.start()
    try:
        yield image_host
    finally:
        await image_host.stop()


@pytest.fixture
async def gw(db_url: str, tmp_path: Path, emu: XaiEmulator, host: ImageHost) -> AsyncIterator[Harness]:
    port = int(host.url.rsplit(":", 1)[1])
    async with running(settings_on(
        db_url, tmp_path / "blobs",
        fetch=FetchSettings(allow_cidrs=("127.0.0.1/32",), allowed_ports=(port,)),
        providers=(ProviderSettings(name="xai", type="xai", base_url=emu.base_url, api_key=KEY, models=MODELS,
                                    timeout=5.0),))) as h:
        yield h


def image(name: str = "a.png", fmt: str = "PNG", size: tuple[int, int] = (64, 48)) -> tuple[str, bytes, str]:
    return name, png_bytes(size, (10, 200, 10), mode="RGB", fmt=fmt), f"image/{fmt.lower()}"


async def edit(h: Harness, model: str = "grok-imagine-image", **fields: str) -> Any:
    return await h.client.post("/v1/images/edits", headers=h.auth, files={"image": image()},
                               data={"model": model, "prompt": "as a pencil sketch", **fields})


@pytest.mark.parametrize("sources", [
    {"image_urls": ["a", "b", "c", "d"]},
    {"image_url": "a", "image_urls": ["b", "c", "d"]},
    {"images": [{"image_url": "a"}, {"image_url": "b"}], "image_urls": ["c", "d"]},
])
async def test_four_json_images_are_refused_before_any_fetch(gw: Harness, emu: XaiEmulator, host: ImageHost,
                                                             sources: dict[str, Any]) -> None:
    def urls(value: Any) -> Any:
        if isinstance(value, list):
            return [urls(v) for v in value]
        if isinstance(value, dict):
            return {k: urls(v) for k, v in value.items()}
        return f"{host.url}/{value}.png"

    balance, _, _ = await gw.books()
    r = await gw.client.post("/v1/images/edits", headers=gw.auth, json={
        "model": "grok-imagine-image", "prompt": "combine", **urls(sources)})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["code"], error["param"], error["type"]) == ("too_many_images", "image", "invalid_request_error")
    assert host.hits == [] and emu.requests == []
    assert await gw.books() == (balance, 0, 0)
    # the same host, three images: fetched and forwarded, so the refusal above really came first
    three = await gw.client.post("/v1/images/edits", headers=gw.auth, json={
        "model": "grok-imagine-image", "prompt": "combine", "image_urls": [f"{host.url}/{n}.png" for n in "abc"],
        "response_format": "b64_json"})
    assert three.status_code == 200, three.text
    assert sorted(host.hits) == ["/a.png", "/b.png", "/c.png"]
    assert len(emu.edit_requests[0].json["images"]) == 3


async def test_multipart_with_two_images_becomes_json_with_data_uris(gw: Harness, emu: XaiEmulator) -> None:
    balance, _, _ = await gw.books()
    r = await gw.client.post("/v1/images/edits", headers=gw.auth, files=[
        ("image[]", image()), ("image[]", image("b.jpg", "JPEG", (32, 32)))], data={
        "model": "grok-imagine-image", "prompt": "merge", "aspect_ratio": "16:9", "resolution": "2k",
        "response_format": "b64_json", "quality": "high", "input_fidelity": "high"})
    assert r.status_code == 200, r.text
    [sent] = emu.edit_requests
    assert sent.content_type == "application/json" and sent.headers["Authorization"] == f"Bearer {KEY}"
    body = sent.json
    assert "image" not in body and "size" not in body and "input_fidelity" not in body
    assert [ref["url"].split(",")[0] for ref in body["images"]] == ["data:image/png;base64",
                                                                   "data:image/jpeg;base64"]
    assert base64.b64decode(body["images"][0]["url"].split(",", 1)[1]) == image()[1]
    assert (body["model"], body["aspect_ratio"], body["resolution"], body["quality"]) == (
        "grok-imagine-image", "16:9", "2k", "high")
    [item] = r.json()["data"]
    out = Image.open(io.BytesIO(base64.b64decode(item["b64_json"])))
    assert out.format == "JPEG" and out.size == (2048, 1152)
    cost = 20_000 + 2 * 2_000  # what xAI reported: $0.02 per output + $0.002 per input image
    assert "usage" not in r.json()  # xAI's cost is the gateway's business; the client sees the charge
    assert await gw.books() == (balance - cost, 0, cost)


async def test_pro_alias_is_sent_as_quality_but_billed_as_pro(gw: Harness, emu: XaiEmulator) -> None:
    listed = await gw.client.get("/v1/models", headers=gw.auth)
    assert {m["id"] for m in listed.json()["data"]} == set(MODELS)
    r = await edit(gw, model="grok-imagine-image-pro")
    assert r.status_code == 200, r.text
    assert emu.edit_requests[0].json["model"] == "grok-imagine-image-quality"
    [item] = r.json()["data"]
    assert item["url"].startswith("http://gateway.test/blobs/outputs/")
    assert Image.open(io.BytesIO(await gw.fetch_output(item["url"]))).format == "JPEG"
    cost = 70_000 + 2_000
    _, held, spent = await gw.books()
    assert (held, spent) == (0, cost)
    entries = [(e.kind, e.memo, e.transaction_id) for e in await gw.gateway.accounts.ledger("alice")
               if e.kind != "deposit"]
    txn = r.json()["billing_transaction_id"]
    assert entries == [("hold", "grok-imagine-image-pro", txn), ("settle", "grok-imagine-image-pro", txn)]


async def test_charged_what_xai_reports_in_ticks(gw: Harness, emu: XaiEmulator) -> None:
    emu.cost_ticks = 123_456_789  # $0.0123456789: less than the catalog price, not a whole micro-dollar
    balance, _, _ = await gw.books()
    r = await edit(gw)
    assert r.status_code == 200, r.text
    assert await gw.books() == (balance - 12_346, 0, 12_346)  # rounded up to the micro-dollar


async def test_catalog_price_when_xai_reports_no_cost(gw: Harness, emu: XaiEmulator) -> None:
    jpeg = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(jpeg, "JPEG")
    emu.fail_next(200, {"data": [{"b64_json": base64.b64encode(jpeg.getvalue()).decode(),
                                  "mime_type": "image/jpeg"}]})
    balance, _, _ = await gw.books()
    r = await edit(gw, response_format="b64_json")
    assert r.status_code == 200, r.text
    assert "usage" not in r.json()
    cost = 20_000 + 2_000  # grok-imagine-image in the catalog: per output image plus per input image
    assert await gw.books() == (balance - cost, 0, cost)


async def test_ephemeral_result_urls_are_copied_not_handed_out(gw: Harness, emu: XaiEmulator) -> None:
    emu.answer_urls = True
    r = await edit(gw, n="2")
    assert r.status_code == 200, r.text
    assert emu.url not in r.text and len(emu.downloads) == 2
    for item in r.json()["data"]:
        assert item["url"].startswith("http://gateway.test/blobs/outputs/")
        assert (await gw.fetch_output(item["url"]))[:3] == b"\xff\xd8\xff"
    emu.inject("url_expired")  # the next answer's URL is gone before the gateway fetches it
    before = await gw.books()
    expired = await edit(gw)
    assert expired.status_code == 502 and expired.json()["error"]["code"] == "upstream_error"
    assert await gw.books() == before


@pytest.mark.parametrize(("kind", "status", "code"), [
    ("credits_exhausted", 502, "upstream_error"),  # xAI's billing 429: not a rate limit for our client
    ("capacity", 429, "rate_limit_exceeded"),  # the momentary 429
    ("invalid_api_key", 502, "upstream_error"),  # xAI answers a bad key with 400: the gateway's fault
    ("permission_denied", 502, "upstream_error"),
    ("model_not_found", 502, "upstream_error"),
    ("moderation", 400, "moderation_blocked"),
    ("relayed_moderation", 400, "moderation_blocked"),
    ("invalid_argument", 400, "upstream_invalid_request"),
    ("server_error", 502, "upstream_error"),
    ("service_unavailable", 502, "upstream_error"),
])
async def test_xai_errors_as_the_client_sees_them(gw: Harness, emu: XaiEmulator, kind: str, status: int,
                                                  code: str) -> None:
    balance, _, _ = await gw.books()
    emu.inject(kind, retry_after=3)
    r = await edit(gw)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code
    for vendor_text in ("0f1e2d", "console.x.ai", "xa***", "Your team", KEY):
        assert vendor_text not in r.text, vendor_text
    if kind == "capacity":
        assert r.headers["Retry-After"] == "3" and error["retry_after"] == 3
    else:
        assert "Retry-After" not in r.headers
    assert len(emu.edit_requests) == 1
    assert await gw.books() == (balance, 0, 0)


async def test_a_wrong_upstream_key_is_a_502_not_the_clients_400(db_url: str, tmp_path: Path,
                                                                 emu: XaiEmulator) -> None:
    async with running(settings_on(
        db_url, tmp_path / "blobs",
        providers=(ProviderSettings(name="xai", type="xai", base_url=emu.base_url, api_key="wrong",
                                    models=MODELS),))) as h:
        balance, _, _ = await h.books()
        r = await edit(h)
        assert emu.edit_requests[0].status == 400
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_error"
        assert "credentials" in r.json()["error"]["message"] and "wrong" not in r.text
        assert await h.books() == (balance, 0, 0)


async def test_moderation_error_does_not_reveal_what_xai_charged_the_gateway(gw: Harness, emu: XaiEmulator) -> None:
    emu.inject("moderation")
    r = await edit(gw)
    assert r.status_code == 400
    assert "upstream_cost_micros" not in r.json()["error"] and "50000" not in r.text


async def test_a_generation_through_xai_is_billed_what_xai_reports(gw: Harness, emu: XaiEmulator) -> None:
    balance, _, _ = await gw.books()
    r = await gw.client.post("/v1/images/generations", headers=gw.auth, json={
        "model": "grok-imagine-image", "prompt": "a cat", "aspect_ratio": "1:1", "n": 2,
        "response_format": "b64_json", "size": "1024x1024"})
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == 2
    [sent] = emu.generation_requests
    assert "size" not in sent.json and sent.json["aspect_ratio"] == "1:1"  # never sent: xAI refuses it
    cost = 2 * 20_000
    assert await gw.books() == (balance - cost, 0, cost)
