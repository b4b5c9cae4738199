"""The xai adapter against the strict xAI emulator."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import aiohttp
import pytest

from emulators.xai_emulator import XaiEmulator
from imagegate.config import ProviderSettings
from imagegate.core.errors import (
    InvalidRequest,
    ModerationBlocked,
    TooManyImages,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from imagegate.providers.registry import build_provider
from imagegate.providers.xai import XaiProvider, cost_micros

from .conftest import JobFactory, SourceFactory

KEY = "xai-key"


@pytest.fixture
async def emu() -> AsyncIterator[XaiEmulator]:
    async with XaiEmulator(KEY) as emulator:
        yield emulator


@pytest.fixture
async def xai(emu: XaiEmulator) -> AsyncIterator[XaiProvider]:
    provider = XaiProvider(name="xai", base_url=emu.base_url, api_key=KEY, timeout=5)
    yield provider
    await provider.aclose()


async def test_one_source_goes_as_image_with_forwarded_options(xai: XaiProvider, emu: XaiEmulator,
                                                               source: SourceFactory, make_job: JobFactory) -> None:
    image = await source()
    job = make_job([image], model="grok-imagine-image-pro", upstream_model="grok-imagine-image-quality", n=2,
                   response_format="url", options={"aspect_ratio": "16:9", "resolution": "1k", "quality": "high",
                                                   "user": "u-1", "size": "1024x1024"})
    result = await xai.run(job)
    [sent] = emu.edit_requests
    assert sent.headers["Authorization"] == f"Bearer {KEY}" and sent.content_type == "application/json"
    expected_uri = "data:image/png;base64," + base64.b64encode(image.read()).decode()
    assert sent.json == {"model": "grok-imagine-image-quality", "prompt": "add a hat", "n": 2,
                         "response_format": "b64_json", "image": {"url": expected_uri, "type": "image_url"},
                         "aspect_ratio": "16:9", "resolution": "1k", "quality": "high", "user": "u-1"}
    assert "size" not in sent.json and "images" not in sent.json
    assert [o.format for o in result.images] == ["jpeg", "jpeg"]
    assert all(o.b64_json for o in result.images)


async def test_two_or_three_sources_go_as_images(xai: XaiProvider, emu: XaiEmulator, source: SourceFactory,
                                                 make_job: JobFactory) -> None:
    images = [await source(), await source(fmt="JPEG"), await source(fmt="WEBP")]
    await xai.run(make_job(images, model="grok-imagine-image"))
    [sent] = emu.edit_requests
    assert "image" not in sent.json
    assert [ref["url"].split(";")[0] for ref in sent.json["images"]] == [
        "data:image/png", "data:image/jpeg", "data:image/webp"]
    assert all(ref["type"] == "image_url" for ref in sent.json["images"])


async def test_four_sources_are_refused_before_sending(xai: XaiProvider, emu: XaiEmulator, source: SourceFactory,
                                                       make_job: JobFactory) -> None:
    with pytest.raises(TooManyImages):
        await xai.run(make_job([await source() for _ in range(4)], model="grok-imagine-image"))
    assert emu.requests == []


async def test_cost_ticks_become_micros_and_stay_with_the_gateway(xai: XaiProvider, emu: XaiEmulator,
                                                                   source: SourceFactory,
                                                                   make_job: JobFactory) -> None:
    result = await xai.run(make_job([await source()], model="grok-imagine-image"))
    assert result.usage is None  # xAI's own cost is what the gateway pays, not token usage to show
    assert result.cost_micros == 22_000
    emu.cost_ticks = 12_345  # not a whole micro-dollar: rounded up
    assert (await xai.run(make_job([await source()], model="grok-imagine-image"))).cost_micros == 2


@pytest.mark.parametrize(("usage", "micros"), [({"cost_in_usd_ticks": 10_000_000_000}, 1_000_000),
                                               ({"cost_in_usd_ticks": 1}, 1), ({"cost_in_usd_ticks": 0}, 0),
                                               ({}, None), (None, None), ({"cost_in_usd_ticks": "x"}, None),
                                               ({"cost_in_usd_ticks": -5}, None), ({"cost_in_usd_ticks": True}, None),
                                               ({"cost_in_usd_ticks": 10**30}, None)])
def test_cost_micros(usage: object, micros: int | None) -> None:
    assert cost_micros(usage) == micros


async def test_url_answers_are_downloaded_at_once_without_credentials(
        emu: XaiEmulator, xai: XaiProvider, source: SourceFactory, make_job: JobFactory) -> None:
    emu.answer_urls = True
    result = await xai.run(make_job([await source()], model="grok-imagine-image", n=2))
    assert len(emu.downloads) == 2 and all("Authorization" not in r.headers for r in emu.downloads)
    assert [o.format for o in result.images] == ["jpeg", "jpeg"]
    assert all(o.data and o.data[:3] == b"\xff\xd8\xff" for o in result.images)


async def test_expired_url_answer_is_an_upstream_error(emu: XaiEmulator, xai: XaiProvider, source: SourceFactory,
                                                       make_job: JobFactory) -> None:
    emu.answer_urls, emu.url_ttl = True, 0.0
    with pytest.raises(UpstreamError, match="could not be downloaded"):
        await xai.run(make_job([await source()], model="grok-imagine-image"))


async def test_bad_key_is_the_gateways_problem_not_the_clients(emu: XaiEmulator, source: SourceFactory,
                                                               make_job: JobFactory) -> None:
    provider = XaiProvider(name="xai", base_url=emu.base_url, api_key="wrong")
    try:
        with pytest.raises(UpstreamError) as caught:
            await provider.run(make_job([await source()], model="grok-imagine-image"))
    finally:
        await provider.aclose()
    assert emu.edit_requests[0].status == 400  # xAI answers a bad key with 400
    assert type(caught.value) is UpstreamError and caught.value.retryable and "credentials" in caught.value.message


@pytest.mark.parametrize("kind", ["moderation", "relayed_moderation"])
async def test_moderation(kind: str, xai: XaiProvider, emu: XaiEmulator, source: SourceFactory,
                          make_job: JobFactory, caplog: pytest.LogCaptureFixture) -> None:
    emu.inject(kind)
    with pytest.raises(ModerationBlocked) as caught:
        await xai.run(make_job([await source()], model="grok-imagine-image"))
    assert caught.value.details == {}  # what xAI charged the gateway is not the client's business...
    charged = [r.getMessage() for r in caplog.records if "moderation refused" in r.getMessage()]
    assert charged == (["provider xai charged 50000 micro-USD for a request its moderation refused"]
                       if kind == "moderation" else [])  # ...but the operator's


async def test_billing_429_is_not_a_rate_limit(xai: XaiProvider, emu: XaiEmulator, source: SourceFactory,
                                               make_job: JobFactory) -> None:
    emu.inject("credits_exhausted")
    with pytest.raises(UpstreamError) as caught:
        await xai.run(make_job([await source()], model="grok-imagine-image"))
    assert type(caught.value) is UpstreamError and caught.value.retryable and "credit" in caught.value.message


async def test_capacity_429_is_a_rate_limit(xai: XaiProvider, emu: XaiEmulator, source: SourceFactory,
                                            make_job: JobFactory) -> None:
    emu.inject("capacity", retry_after=3)
    with pytest.raises(UpstreamRateLimited) as caught:
        await xai.run(make_job([await source()], model="grok-imagine-image"))
    assert caught.value.retryable and caught.value.retry_after == 3


async def test_invalid_argument_is_the_clients_error(xai: XaiProvider, emu: XaiEmulator, source: SourceFactory,
                                                     make_job: JobFactory) -> None:
    emu.inject("invalid_argument")
    with pytest.raises(InvalidRequest, match="Argument not supported: style"):
        await xai.run(make_job([await source()], model="grok-imagine-image"))


@pytest.mark.parametrize("kind", ["permission_denied", "model_not_found", "server_error", "relayed_server_error",
                                  "service_unavailable", "disconnect"])
async def test_provider_side_failures_are_retryable(kind: str, xai: XaiProvider, emu: XaiEmulator,
                                                    source: SourceFactory, make_job: JobFactory) -> None:
    emu.inject(kind)
    with pytest.raises(UpstreamError) as caught:
        await xai.run(make_job([await source()], model="grok-imagine-image"))
    assert type(caught.value) is UpstreamError and caught.value.retryable


async def test_timeout(emu: XaiEmulator, source: SourceFactory, make_job: JobFactory) -> None:
    provider = XaiProvider(name="xai", base_url=emu.base_url, api_key=KEY, timeout=0.3)
    emu.inject("hang")
    try:
        with pytest.raises(UpstreamTimeout):
            await provider.run(make_job([await source()], model="grok-imagine-image"))
    finally:
        await provider.aclose()


async def test_emulator_is_strict_about_what_the_adapter_avoids(emu: XaiEmulator) -> None:
    ref = {"url": "data:image/png;base64,AAAA", "type": "image_url"}
    cases = [({"model": "grok-imagine-image", "prompt": "x", "image": ref, "size": "1024x1024"},
              "Argument not supported: size"),
             ({"model": "grok-imagine-image", "prompt": "x", "image": ref, "images": [ref]}, "Exactly one"),
             ({"model": "grok-imagine-image", "prompt": "x", "images": [ref] * 4}, "between 1 and 3")]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as session:
        for body, message in cases:
            async with session.post(f"{emu.base_url}/images/edits", json=body) as response:
                assert response.status == 400 and message in (await response.json())["error"]
        async with session.post(f"{emu.base_url}/images/edits", data=aiohttp.FormData({"prompt": "x"})) as response:
            assert response.status == 415  # JSON only


async def test_registry_default_base_url() -> None:
    provider = build_provider(ProviderSettings(name="x", type="xai", models=("grok-imagine-image",), api_key="k"))
    assert isinstance(provider, XaiProvider) and provider._base == "https://api.x.ai/v1"
    await provider.aclose()


async def test_injected_expired_url_is_an_upstream_error(emu: XaiEmulator, xai: XaiProvider, source: SourceFactory,
                                                         make_job: JobFactory) -> None:
    emu.inject("url_expired")  # the ephemeral-result row: the answer's URL is gone before it is fetched
    with pytest.raises(UpstreamError, match="could not be downloaded") as caught:
        await xai.run(make_job([await source()], model="grok-imagine-image"))
    assert caught.value.retryable and [r.status for r in emu.downloads] == [404]
    assert (await xai.run(make_job([await source()], model="grok-imagine-image"))).images  # only once


async def test_vendor_message_is_quoted_only_as_a_bounded_excerpt(xai: XaiProvider, emu: XaiEmulator,
                                                                  source: SourceFactory,
                                                                  make_job: JobFactory) -> None:
    emu.fail_next(400, {"code": "Client specified an invalid argument", "error": "Bad\nvalue: " + "x" * 5000})
    with pytest.raises(InvalidRequest) as caught:
        await xai.run(make_job([await source()], model="grok-imagine-image"))
    assert "\n" not in caught.value.message and len(caught.value.message) < 260


@pytest.mark.parametrize("kind", ["invalid_api_key", "permission_denied", "model_not_found", "credits_exhausted",
                                  "capacity", "server_error", "service_unavailable", "moderation"])
async def test_other_failures_are_told_in_our_own_words(kind: str, xai: XaiProvider, emu: XaiEmulator,
                                                        source: SourceFactory, make_job: JobFactory) -> None:
    emu.inject(kind)
    vendor = emu._canned(kind, None)[1]["error"]
    with pytest.raises((InvalidRequest, UpstreamError)) as caught:
        await xai.run(make_job([await source()], model="grok-imagine-image"))
    assert vendor[:30] not in caught.value.message and "xa***" not in caught.value.message


async def test_alias_is_sent_upstream_but_errors_name_the_requested_model(
        xai: XaiProvider, emu: XaiEmulator, source: SourceFactory, make_job: JobFactory) -> None:
    job = make_job([await source() for _ in range(4)], model="grok-imagine-image-pro",
                   upstream_model="grok-imagine-image-quality")
    with pytest.raises(TooManyImages) as caught:
        await xai.run(job)
    assert "'grok-imagine-image-pro'" in caught.value.message and "quality" not in caught.value.message


async def test_latency_beyond_the_timeout(emu: XaiEmulator, source: SourceFactory, make_job: JobFactory) -> None:
    emu.latency = 2.0
    provider = XaiProvider(name="xai", base_url=emu.base_url, api_key=KEY, timeout=0.3)
    try:
        with pytest.raises(UpstreamTimeout):
            await provider.run(make_job([await source()], model="grok-imagine-image"))
    finally:
        await provider.aclose()


async def test_a_generation_goes_to_generations_without_images(xai: XaiProvider, emu: XaiEmulator,
                                                              make_job: JobFactory) -> None:
    result = await xai.run(make_job([], model="grok-imagine-image", operation="generate", n=2, prompt="a cat",
                                    options={"aspect_ratio": "16:9", "resolution": "1k"}))
    [sent] = emu.generation_requests
    assert sent.json == {"model": "grok-imagine-image", "prompt": "a cat", "n": 2, "response_format": "b64_json",
                         "aspect_ratio": "16:9", "resolution": "1k"}
    assert len(result.images) == 2 and result.images[0].width > result.images[0].height
    assert result.cost_micros is not None and result.cost_micros > 0
