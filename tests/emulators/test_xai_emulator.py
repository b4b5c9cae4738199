"""Tests of the xAI emulator's ``POST /v1/images/generations``, over raw HTTP."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image

from .xai_emulator import GENERATION_MODELS, XaiEmulator

KEY = "xai-key"
INVALID = "Client specified an invalid argument"
EXHAUSTED = "Some resource has been exhausted"
TICKS_PER_USD = 10_000_000_000


@pytest.fixture
async def emu() -> AsyncIterator[XaiEmulator]:
    async with XaiEmulator(KEY) as e:
        yield e


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as c:
        yield c


async def generate(http: httpx.AsyncClient, emu: XaiEmulator, body: Any, key: str = KEY) -> httpx.Response:
    return await http.post(f"{emu.base_url}/images/generations", json=body, headers={"Authorization": f"Bearer {key}"})


def jpeg(b64: str) -> Image.Image:
    im = Image.open(io.BytesIO(base64.b64decode(b64)))
    im.load()
    return im


def flat_error(r: httpx.Response, status: int, code: str = INVALID) -> str:
    body = r.json()
    assert r.status_code == status and set(body) >= {"code", "error"} and body["code"] == code, (r.status_code, body)
    return str(body["error"])


async def test_generation_answers_urls_served_on_loopback(http: httpx.AsyncClient, emu: XaiEmulator) -> None:
    r = await generate(http, emu, {"model": "grok-imagine-image", "prompt": "A cat in a tree", "n": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"data", "usage"}
    assert body["usage"] == {"cost_in_usd_ticks": 2 * 200_000_000}
    assert [set(item) for item in body["data"]] == [{"url", "mime_type"}] * 2
    assert r.headers["x-request-id"] == emu.generation_requests[-1].request_id and "x-metrics-e2e-ms" in r.headers
    for item in body["data"]:
        assert item["mime_type"] == "image/jpeg" and item["url"].startswith(emu.url + "/imgen/")
        got = await http.get(item["url"])
        assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
        im = Image.open(io.BytesIO(got.content))
        assert im.format == "JPEG" and im.size == (1024, 1024)  # aspect_ratio auto, played as 1:1
    assert len(emu.downloads) == 2 and not emu.edit_requests
    assert emu.generation_requests[-1].json == {"model": "grok-imagine-image", "prompt": "A cat in a tree", "n": 2}


@pytest.mark.parametrize(("ratio", "resolution", "size"), [
    ("16:9", "2k", (2048, 1152)), ("9:19.5", "1k", (473, 1024)), ("1:1", "2k", (2048, 2048)),
    ("3:2", None, (1024, 683)), ("auto", "1k", (1024, 1024)),
])
async def test_b64_images_follow_aspect_ratio_and_resolution(http: httpx.AsyncClient, emu: XaiEmulator, ratio: str,
                                                             resolution: str | None, size: tuple[int, int]) -> None:
    body = {"model": "grok-imagine-image", "prompt": "x", "response_format": "b64_json", "aspect_ratio": ratio}
    if resolution:
        body["resolution"] = resolution
    r = await generate(http, emu, body)
    assert r.status_code == 200, r.text
    [item] = r.json()["data"]
    assert set(item) == {"b64_json", "mime_type"} and not item["b64_json"].startswith("data:")
    assert jpeg(item["b64_json"]).size == size


@pytest.mark.parametrize(("field", "value"), [
    ("size", "1024x1024"), ("style", "vivid"), ("image", {"url": "https://x/y.png"}), ("mask", {"url": "m"}),
    ("image_format", "base64"), ("storage_options", {}), ("stream", True),
])
async def test_unknown_fields_are_not_supported(http: httpx.AsyncClient, emu: XaiEmulator, field: str,
                                                value: Any) -> None:
    r = await generate(http, emu, {"model": "grok-imagine-image", "prompt": "x", field: value})
    assert flat_error(r, 400) == f"Argument not supported: {field}"


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"prompt": "x", "n": 0}, 400, "n must be an integer between 1 and 10"),
    ({"prompt": "x", "n": 11}, 400, "n must be an integer between 1 and 10"),
    ({"prompt": "x", "n": "2"}, 400, "n must be an integer between 1 and 10"),
    ({"prompt": "x", "n": True}, 400, "n must be an integer between 1 and 10"),
    ({"prompt": "x", "aspect_ratio": "5:4"}, 400, "Invalid aspect_ratio"),
    ({"prompt": "x", "resolution": "4k"}, 400, "Invalid resolution"),
    ({"prompt": "x", "response_format": "png"}, 400, "Invalid response_format"),
    ({"prompt": "x", "user": 7}, 400, "user must be a string"),
    ({"prompt": ""}, 400, "prompt must be a non-empty string"),
    ({"prompt": 5}, 400, "prompt must be a non-empty string"),
    ({"n": 1}, 422, "missing field `prompt`"),
])
async def test_generation_strictness(http: httpx.AsyncClient, emu: XaiEmulator, body: dict[str, Any], status: int,
                                     message: str) -> None:
    r = await generate(http, emu, {"model": "grok-imagine-image", **body})
    assert message in flat_error(r, status)


async def test_models_and_aliases(http: httpx.AsyncClient, emu: XaiEmulator) -> None:
    r = await generate(http, emu, {"model": "grok-x", "prompt": "x"})
    assert flat_error(r, 404, "Some requested entity was not found") == (
        "The model grok-x does not exist or your team does not have access to it.")
    r = await generate(http, emu, {"model": "grok-imagine-image-pro", "prompt": "x"})
    assert r.status_code == 404
    r = await generate(http, emu, {"prompt": "x"})  # no model: the default
    assert r.status_code == 200 and r.json()["usage"]["cost_in_usd_ticks"] == 200_000_000
    r = await generate(http, emu, {"model": "grok-imagine-image-quality", "prompt": "x"})
    assert r.status_code == 200 and r.json()["usage"]["cost_in_usd_ticks"] == 700_000_000
    assert set(GENERATION_MODELS) == {"grok-imagine-image", "grok-imagine-image-quality", "grok-imagine-image-2.0"}
    async with XaiEmulator(KEY, aliases={"grok-imagine-image-pro": "grok-imagine-image-quality"}) as aliased:
        r = await generate(http, aliased, {"model": "grok-imagine-image-pro", "prompt": "x"})
    assert r.status_code == 200 and r.json()["usage"]["cost_in_usd_ticks"] == 700_000_000


async def test_quality_only_where_it_is_accepted(http: httpx.AsyncClient, emu: XaiEmulator) -> None:
    r = await generate(http, emu, {"model": "grok-imagine-image-2.0", "prompt": "x"})
    assert r.status_code == 200 and r.json()["usage"]["cost_in_usd_ticks"] == 400_000_000  # medium, 1k
    r = await generate(http, emu, {"model": "grok-imagine-image-2.0", "prompt": "x", "quality": "low",
                                   "resolution": "2k", "n": 2})
    assert r.status_code == 200 and r.json()["usage"]["cost_in_usd_ticks"] == round(2 * 0.03 * TICKS_PER_USD)
    r = await generate(http, emu, {"model": "grok-imagine-image-2.0", "prompt": "x", "quality": "ultra"})
    assert "Invalid quality" in flat_error(r, 400)
    r = await generate(http, emu, {"model": "grok-imagine-image", "prompt": "x", "quality": "low"})
    assert flat_error(r, 400) == "Argument not supported: quality"
    async with XaiEmulator(KEY, quality_elsewhere="ignore") as lenient:
        r = await generate(http, lenient, {"model": "grok-imagine-image", "prompt": "x", "quality": "high"})
        assert r.status_code == 200 and r.json()["usage"]["cost_in_usd_ticks"] == 200_000_000
        r = await generate(http, lenient, {"model": "grok-imagine-image", "prompt": "x", "quality": "best"})
        assert r.status_code == 400


async def test_transport_errors(http: httpx.AsyncClient, emu: XaiEmulator) -> None:
    r = await generate(http, emu, {"prompt": "x"}, key="wrong")
    assert flat_error(r, 400).startswith("Incorrect API key provided")
    url = f"{emu.base_url}/images/generations"
    auth = {"Authorization": f"Bearer {KEY}"}
    r = await http.post(url, data={"prompt": "x"}, headers=auth)
    assert r.status_code == 415
    r = await http.post(url, content=b"{nope", headers={**auth, "Content-Type": "application/json"})
    assert "parse the request body as JSON" in flat_error(r, 400)
    r = await http.post(url, json=["x"], headers=auth)
    assert r.status_code == 400
    r = await http.post(f"{emu.base_url}/images/variations", json={}, headers=auth)
    assert flat_error(r, 404, "Some requested entity was not found").startswith("No handler found")


async def test_billing_and_capacity_429s_differ(http: httpx.AsyncClient, emu: XaiEmulator) -> None:
    emu.inject("credits_exhausted", on="generation")
    emu.inject("capacity", on="generation", retry_after=3)
    r = await generate(http, emu, {"prompt": "x"})
    assert "used all available credits" in flat_error(r, 429, EXHAUSTED) and "retry-after" not in r.headers
    r = await generate(http, emu, {"prompt": "x"})
    assert "temporarily at capacity" in flat_error(r, 429, EXHAUSTED) and r.headers["retry-after"] == "3"
    assert (await generate(http, emu, {"prompt": "x"})).status_code == 200
    emu.inject("capacity")  # the edit route: generations are not touched
    assert (await generate(http, emu, {"prompt": "x"})).status_code == 200 and emu.pending_failures == 1
    emu.reset_failures()
    emu.inject("moderation", on=None)
    r = await generate(http, emu, {"prompt": "x"})
    assert flat_error(r, 400) == "Generated image rejected by content moderation."
    assert r.json()["usage"] == {"cost_in_usd_ticks": 500_000_000}


async def test_block_reason_and_expired_urls(http: httpx.AsyncClient, emu: XaiEmulator) -> None:
    emu.inject("block_reason", on="generation")
    r = await generate(http, emu, {"prompt": "x"})
    assert r.status_code == 200 and r.json()["data"] == [] and r.json()["block_reason"]
    emu.inject("url_expired")  # aimed at edits
    emu.inject("url_expired", on="generation")
    r = await generate(http, emu, {"prompt": "x", "response_format": "b64_json"})
    url = r.json()["data"][0]["url"]  # expired answers are URLs even when b64_json was asked
    assert (await http.get(url)).status_code == 404
    r = await generate(http, emu, {"prompt": "x"})
    assert (await http.get(r.json()["data"][0]["url"])).status_code == 200
    emu.expire_urls()
    assert (await http.get(r.json()["data"][0]["url"])).status_code == 404


async def test_answer_urls_cost_override_revised_prompt_and_latency(http: httpx.AsyncClient) -> None:
    async with XaiEmulator(KEY, answer_urls=True, cost_ticks=5, generation_revised_prompt=True,
                           max_prompt_length=10, latency=0.2) as emu:
        started = time.perf_counter()
        r = await generate(http, emu, {"prompt": "x", "response_format": "b64_json"})
        assert time.perf_counter() - started >= 0.2
        assert r.json() == {"data": [{"url": r.json()["data"][0]["url"], "mime_type": "image/jpeg",
                                      "revised_prompt": ""}], "usage": {"cost_in_usd_ticks": 5}}
        r = await generate(http, emu, {"prompt": "x" * 11})
        assert "too long" in flat_error(r, 400)
    with pytest.raises(ValueError, match="quality_elsewhere"):
        XaiEmulator(quality_elsewhere="maybe")
