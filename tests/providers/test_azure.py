"""The azure adapter against the strict Azure OpenAI emulator."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from PIL import Image

from emulators.azure_emulator import INJECTABLE, AzureEmulator
from imagegate.config import ConfigError, ProviderSettings
from imagegate.core.errors import (
    InvalidRequest,
    ModerationBlocked,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from imagegate.providers.azure import AzureProvider
from imagegate.providers.openai import translate_error
from imagegate.providers.registry import build_provider

from .conftest import JobFactory, SourceFactory

KEY = "azure-key"


@pytest.fixture
async def emu() -> AsyncIterator[AzureEmulator]:
    async with AzureEmulator(KEY, deployments={"img-prod": "gpt-image-1", "gpt-image-1.5": "gpt-image-1.5",
                                               "mini": "gpt-image-1-mini"}) as emulator:
        yield emulator


ProviderFactory = Callable[..., AzureProvider]


@pytest.fixture
async def make_azure(emu: AzureEmulator) -> AsyncIterator[ProviderFactory]:
    """`make_azure(**settings)`: a provider for the emulator's resource, closed after the test."""
    made: list[AzureProvider] = []

    def make(**settings: Any) -> AzureProvider:
        made.append(AzureProvider(**{"name": "az", "base_url": emu.base_url, "api_key": KEY, **settings}))
        return made[-1]

    yield make
    for provider in made:
        await provider.aclose()


@pytest.fixture
def azure(make_azure: ProviderFactory) -> AzureProvider:
    return make_azure(deployments={"gpt-image-1": "img-prod", "gpt-image-1-mini": "mini"}, timeout=5)


async def test_deployment_route_forwards_options_and_never_response_format(
        azure: AzureProvider, emu: AzureEmulator, source: SourceFactory, make_job: JobFactory) -> None:
    job = make_job([await source()], model="gpt-image-1", response_format="url",
                   options={"size": "1024x1536", "quality": "low", "user": "u-1"})
    result = await azure.run(job)
    [sent] = emu.edit_requests
    assert sent.path == "/openai/deployments/img-prod/images/edits"
    assert sent.query == {"api-version": "2025-04-01-preview"}
    assert sent.headers["api-key"] == KEY and "Authorization" not in sent.headers
    assert sent.fields == {"model": "gpt-image-1", "prompt": "add a hat", "size": "1024x1536", "quality": "low",
                           "user": "u-1"}
    assert "response_format" not in sent.fields
    assert [(name, ctype) for name, _, ctype, _ in sent.files] == [("image", "image/png")]
    [image] = result.images
    assert image.format == "png" and image.b64_json is not None
    assert Image.open(io.BytesIO(base64.b64decode(image.b64_json))).size == (1024, 1536)
    assert result.usage is not None and result.usage.output_tokens > 0  # passed through as sent
    assert result.cost_micros is None


async def test_deployment_defaults_to_upstream_model_id(azure: AzureProvider, emu: AzureEmulator,
                                                        source: SourceFactory, make_job: JobFactory) -> None:
    await azure.run(make_job([await source()], model="gpt-image-1.5", n=2))
    [sent] = emu.edit_requests
    assert sent.path == "/openai/deployments/gpt-image-1.5/images/edits" and sent.fields["n"] == "2"


async def test_several_images_mask_and_jpeg(azure: AzureProvider, emu: AzureEmulator, source: SourceFactory,
                                            make_job: JobFactory) -> None:
    images = [await source(), await source(fmt="JPEG", param="image[1]")]
    mask = await source(param="mask")
    result = await azure.run(make_job(images, model="gpt-image-1", mask=mask, options={"output_format": "jpeg"}))
    [sent] = emu.edit_requests
    assert [(name, ctype) for name, _, ctype, _ in sent.files] == [
        ("image[]", "image/png"), ("image[]", "image/jpeg"), ("mask", "image/png")]
    assert result.images[0].format == "jpeg"
    assert base64.b64decode(result.images[0].b64_json or "")[:3] == b"\xff\xd8\xff"


@pytest.mark.parametrize("how", ["api_version", "base_url"])
async def test_v1_route_sends_the_deployment_as_model(how: str, emu: AzureEmulator, make_azure: ProviderFactory,
                                                      source: SourceFactory, make_job: JobFactory) -> None:
    if how == "api_version":
        provider = make_azure(api_version="v1", deployments={"gpt-image-1": "img-prod"})
    else:
        provider = make_azure(base_url=emu.v1_base_url + "/", deployments={"gpt-image-1": "img-prod"})
    await provider.run(make_job([await source()], model="gpt-image-1"))
    [sent] = emu.edit_requests
    assert sent.path == "/openai/v1/images/edits" and sent.query == {}
    assert sent.headers["api-key"] == KEY and "Authorization" not in sent.headers
    assert sent.fields["model"] == "img-prod" and "response_format" not in sent.fields


async def test_v1_preview_api_version_is_sent(emu: AzureEmulator, make_azure: ProviderFactory,
                                              source: SourceFactory, make_job: JobFactory) -> None:
    provider = make_azure(base_url=emu.v1_base_url, api_version="preview")
    await provider.run(make_job([await source()], model="gpt-image-1.5"))
    assert emu.edit_requests[0].query == {"api-version": "preview"}


async def test_configured_api_version_is_sent(emu: AzureEmulator, make_azure: ProviderFactory,
                                              source: SourceFactory, make_job: JobFactory) -> None:
    provider = make_azure(api_version="2025-06-01-preview", deployments={"gpt-image-1": "img-prod"})
    await provider.run(make_job([await source()], model="gpt-image-1"))
    assert emu.edit_requests[0].query == {"api-version": "2025-06-01-preview"}


async def test_webp_output_is_refused_before_sending(azure: AzureProvider, emu: AzureEmulator,
                                                     source: SourceFactory, make_job: JobFactory) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await azure.run(make_job([await source()], model="gpt-image-1", options={"output_format": "webp"}))
    assert caught.value.param == "output_format" and "png or jpeg" in caught.value.message
    assert emu.requests == []


@pytest.mark.parametrize(("settings", "status"), [
    ({"deployments": {"gpt-image-1": "gone"}}, 404),  # DeploymentNotFound
    ({"api_version": "2024-10-21"}, 404),  # a version without image edits: "Resource not found"
    ({"api_key": "wrong-key"}, 401),
])
async def test_unknown_deployment_old_api_version_or_bad_key_is_a_route_problem(
        settings: dict[str, Any], status: int, emu: AzureEmulator, make_azure: ProviderFactory,
        source: SourceFactory, make_job: JobFactory) -> None:
    provider = make_azure(**{"deployments": {"gpt-image-1": "img-prod"}, **settings})
    with pytest.raises(UpstreamError) as caught:
        await provider.run(make_job([await source()], model="gpt-image-1"))
    assert type(caught.value) is UpstreamError and caught.value.retryable
    assert emu.edit_requests[0].status == status


@pytest.mark.parametrize("kind", ["content_filter", "content_filter_output", "responsible_ai",
                                  "moderation_blocked"])
async def test_every_safety_shape_is_moderation(kind: str, azure: AzureProvider, emu: AzureEmulator,
                                                source: SourceFactory, make_job: JobFactory) -> None:
    emu.inject(kind)
    with pytest.raises(ModerationBlocked):
        await azure.run(make_job([await source()], model="gpt-image-1"))


async def test_rate_limit_carries_retry_after(azure: AzureProvider, emu: AzureEmulator, source: SourceFactory,
                                              make_job: JobFactory) -> None:
    emu.inject("rate_limit", retry_after=7)
    with pytest.raises(UpstreamRateLimited) as caught:
        await azure.run(make_job([await source()], model="gpt-image-1"))
    assert caught.value.retryable and caught.value.retry_after == 7


async def test_daily_quota_is_not_a_momentary_rate_limit(azure: AzureProvider, emu: AzureEmulator,
                                                         source: SourceFactory, make_job: JobFactory) -> None:
    emu.inject("daily_quota")
    with pytest.raises(UpstreamError) as caught:
        await azure.run(make_job([await source()], model="gpt-image-1"))
    assert not isinstance(caught.value, UpstreamRateLimited)
    assert caught.value.retryable and caught.value.retry_after == 86400
    assert "quota" in caught.value.message and "not a momentary rate limit" in caught.value.message


@pytest.mark.parametrize(("kind", "expected"), [
    ("invalid_key", UpstreamError), ("deployment_not_found", UpstreamError), ("resource_not_found", UpstreamError),
    ("server_error", UpstreamError), ("service_unavailable", UpstreamError), ("disconnect", UpstreamError),
])
async def test_gateway_side_failures_are_retryable_upstream_errors(
        kind: str, expected: type[Exception], azure: AzureProvider, emu: AzureEmulator, source: SourceFactory,
        make_job: JobFactory) -> None:
    emu.inject(kind)
    with pytest.raises(expected) as caught:
        await azure.run(make_job([await source()], model="gpt-image-1"))
    assert type(caught.value) is expected and caught.value.retryable  # type: ignore[attr-defined]


async def test_invalid_parameter_is_the_clients_error(azure: AzureProvider, emu: AzureEmulator,
                                                      source: SourceFactory, make_job: JobFactory) -> None:
    emu.inject("invalid_param")
    with pytest.raises(InvalidRequest) as caught:
        await azure.run(make_job([await source()], model="gpt-image-1"))
    assert caught.value.param == "quality"


async def test_emulator_refuses_response_format_and_webp(azure: AzureProvider, emu: AzureEmulator,
                                                         source: SourceFactory, make_job: JobFactory) -> None:
    # what the adapter protects against: Azure itself refuses both
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for extra in ({"response_format": "b64_json"}, {"output_format": "webp"}):
            form = aiohttp.FormData({"prompt": "x", **extra})
            form.add_field("image", b"\x89PNG", filename="a.png", content_type="image/png")
            url = f"{emu.base_url}/openai/deployments/img-prod/images/edits?api-version=2025-04-01-preview"
            async with session.post(url, data=form, headers={"api-key": KEY}) as response:
                body: Any = await response.json()
                assert response.status == 400 and body["error"]["param"] in extra


@pytest.mark.parametrize("how", ["hang", "latency"])
async def test_timeout(how: str, emu: AzureEmulator, make_azure: ProviderFactory, source: SourceFactory,
                       make_job: JobFactory) -> None:
    if how == "hang":
        emu.inject("hang")
    else:
        emu.latency = 2.0
    with pytest.raises(UpstreamTimeout) as caught:
        await make_azure(timeout=0.3).run(make_job([await source()], model="gpt-image-1.5"))
    assert caught.value.retryable


def test_every_injectable_kind_is_translated_in_our_own_words() -> None:
    emu = AzureEmulator()
    for kind in INJECTABLE:
        if kind in ("hang", "disconnect"):
            continue
        status, body, headers = emu._canned(kind, None)
        error = translate_error(status, json.dumps(body).encode(), headers, "az")
        vendor = str(body["error"].get("message") or "")
        assert not vendor or vendor[:30] not in error.message, kind


async def test_registry_builds_azure_and_requires_base_url(make_job: JobFactory) -> None:
    settings = ProviderSettings(name="az", type="azure", models=("gpt-image-1",), base_url="https://r.openai.azure.com",
                                api_key="k", deployments={"gpt-image-1": "d"})
    provider = build_provider(settings)
    assert isinstance(provider, AzureProvider)
    assert provider.url(make_job([], model="gpt-image-1")) == (
        "https://r.openai.azure.com/openai/deployments/d/images/edits?api-version=2025-04-01-preview")
    assert provider.url(make_job([], model="gpt-image-1", operation="generate")) == (
        "https://r.openai.azure.com/openai/deployments/d/images/generations?api-version=2025-04-01-preview")
    await provider.aclose()
    with pytest.raises(ConfigError, match="base_url"):
        build_provider(ProviderSettings(name="az", type="azure", models=("gpt-image-1",)))


async def test_a_generation_goes_to_the_deployment_as_json(azure: AzureProvider, emu: AzureEmulator,
                                                          make_job: JobFactory) -> None:
    result = await azure.run(make_job([], model="gpt-image-1", operation="generate", prompt="a fox",
                                      options={"size": "1024x1536", "quality": "low", "safety_identifier": "u-9"}))
    [sent] = emu.generation_requests
    assert sent.path == "/openai/deployments/img-prod/images/generations"
    assert sent.json == {"model": "gpt-image-1", "prompt": "a fox", "size": "1024x1536", "quality": "low",
                         "safety_identifier": "u-9"}
    assert (result.images[0].width, result.images[0].height) == (1024, 1536) and result.usage is not None


async def test_azure_streams_partial_images_then_the_completed_one(azure: AzureProvider, emu: AzureEmulator,
                                                                   make_job: JobFactory) -> None:
    job = make_job([], model="gpt-image-1", operation="generate", prompt="a fox",
                   options={"size": "1024x1024", "quality": "low", "partial_images": 2})
    events = [event async for event in azure.stream(job)]
    assert [(e.final, e.index) for e in events] == [(False, 0), (False, 1), (True, 0)]
    assert events[-1].usage is not None and events[-1].image.format == "png"
    assert emu.generation_requests[0].json["stream"] is True


async def test_a_stream_error_from_azure_is_an_upstream_error(azure: AzureProvider, emu: AzureEmulator,
                                                              make_job: JobFactory) -> None:
    emu.inject("stream_error", after_events=1, on="generation")
    job = make_job([], model="gpt-image-1", operation="generate", prompt="a fox",
                   options={"size": "1024x1024", "quality": "low", "partial_images": 2})
    seen = []
    with pytest.raises(UpstreamError):
        async for event in azure.stream(job):
            seen.append(event)
    assert len(seen) == 1 and not seen[0].final
