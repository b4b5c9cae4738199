"""The openai adapter against the strict OpenAI emulator: the request it sends, and every failure row."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from emulators.openai_emulator import INJECTABLE, OpenAIEmulator
from imagegate.core.errors import (
    InvalidRequest,
    ModerationBlocked,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from imagegate.core.usage import TokenUsage
from imagegate.providers.openai import OpenAIProvider, parse_usage, translate_error

from .conftest import JobFactory, SourceFactory, image_bytes

KEY = "sk-upstream"


@pytest.fixture
async def emu() -> AsyncIterator[OpenAIEmulator]:
    async with OpenAIEmulator(KEY) as emulator:
        yield emulator


@pytest.fixture
async def openai(emu: OpenAIEmulator) -> AsyncIterator[OpenAIProvider]:
    provider = OpenAIProvider(name="oa", base_url=emu.base_url, api_key=KEY, timeout=5, organization="org-1",
                              project="proj-1")
    yield provider
    await provider.aclose()


async def test_one_source_options_and_headers(openai: OpenAIProvider, emu: OpenAIEmulator, source: SourceFactory,
                                              make_job: JobFactory) -> None:
    job = make_job([await source()], model="gpt-image-1", n=2, response_format="url",
                   options={"size": "1024x1536", "quality": "low", "output_format": "webp", "background": "opaque"})
    result = await openai.run(job)
    [sent] = emu.edit_requests
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.headers["OpenAI-Organization"] == "org-1" and sent.headers["OpenAI-Project"] == "proj-1"
    assert sent.fields == {"model": "gpt-image-1", "prompt": "add a hat", "n": "2", "size": "1024x1536",
                           "quality": "low", "output_format": "webp", "background": "opaque"}
    assert [(name, ctype) for name, _, ctype, _ in sent.files] == [("image", "image/png")]
    assert [o.format for o in result.images] == ["webp", "webp"]
    assert result.echo == {"background": "opaque", "output_format": "webp", "quality": "low",
                           "size": "1024x1536"}
    assert result.usage is not None and result.usage.output_tokens > 0


async def test_several_sources_go_as_image_array(openai: OpenAIProvider, emu: OpenAIEmulator,
                                                 source: SourceFactory, make_job: JobFactory) -> None:
    await openai.run(make_job([await source(), await source(fmt="JPEG")], model="gpt-image-1.5"))
    assert [(name, ctype) for name, _, ctype, _ in emu.edit_requests[0].files] == [
        ("image[]", "image/png"), ("image[]", "image/jpeg")]


async def test_dall_e_2_is_asked_for_base64(openai: OpenAIProvider, emu: OpenAIEmulator, source: SourceFactory,
                                            make_job: JobFactory) -> None:
    result = await openai.run(make_job([await source(size=(256, 256))], model="dall-e-2",
                                        options={"size": "256x256"}))
    assert emu.edit_requests[0].fields["response_format"] == "b64_json"
    assert result.images[0].b64_json


@pytest.mark.parametrize(("kind", "stage"), [("moderation_blocked", "input"), ("moderation_blocked_output", "output"),
                                             ("content_policy_violation", None)])
async def test_safety_blocks_are_moderation(kind: str, stage: str | None, openai: OpenAIProvider,
                                            emu: OpenAIEmulator, source: SourceFactory,
                                            make_job: JobFactory) -> None:
    emu.inject(kind)
    with pytest.raises(ModerationBlocked) as caught:
        await openai.run(make_job([await source()], model="gpt-image-1"))
    assert caught.value.details.get("stage") == stage
    assert "safety system" in caught.value.message and "help.openai.com" not in caught.value.message


async def test_rate_limit_carries_retry_after(openai: OpenAIProvider, emu: OpenAIEmulator, source: SourceFactory,
                                              make_job: JobFactory) -> None:
    emu.inject("rate_limit", retry_after=1.5)
    with pytest.raises(UpstreamRateLimited) as caught:
        await openai.run(make_job([await source()], model="gpt-image-1"))
    assert caught.value.retryable and caught.value.retry_after == 1.5  # from retry-after-ms


async def test_spent_quota_is_not_a_rate_limit(openai: OpenAIProvider, emu: OpenAIEmulator, source: SourceFactory,
                                               make_job: JobFactory) -> None:
    emu.inject("insufficient_quota")
    with pytest.raises(UpstreamError) as caught:
        await openai.run(make_job([await source()], model="gpt-image-1"))
    assert type(caught.value) is UpstreamError and caught.value.retryable and "quota" in caught.value.message


@pytest.mark.parametrize("kind", ["unknown_parameter", "invalid_input_fidelity_model", "duplicate_parameter",
                                  "unsupported_file_mimetype", "invalid_image_file"])
async def test_invalid_requests_name_the_vendor_code_not_its_message(
        kind: str, openai: OpenAIProvider, emu: OpenAIEmulator, source: SourceFactory, make_job: JobFactory) -> None:
    emu.inject(kind)
    with pytest.raises(InvalidRequest) as caught:
        await openai.run(make_job([await source()], model="gpt-image-1"))
    assert caught.value.code == "upstream_invalid_request"
    assert caught.value.message.startswith("The provider rejected the request")
    assert "'" not in caught.value.message.split(":", 1)[1]  # the vendor's quoted message is not repeated


@pytest.mark.parametrize("kind", ["invalid_api_key", "org_not_verified", "server_error", "bad_gateway",
                                  "service_unavailable", "gateway_timeout", "disconnect"])
async def test_provider_side_failures_are_retryable(kind: str, openai: OpenAIProvider, emu: OpenAIEmulator,
                                                    source: SourceFactory, make_job: JobFactory) -> None:
    emu.inject(kind)
    with pytest.raises(UpstreamError) as caught:
        await openai.run(make_job([await source()], model="gpt-image-1"))
    assert type(caught.value) is UpstreamError and caught.value.retryable


async def test_unknown_model_upstream_is_a_route_problem(openai: OpenAIProvider, emu: OpenAIEmulator,
                                                         source: SourceFactory, make_job: JobFactory) -> None:
    with pytest.raises(UpstreamError) as caught:  # the catalog knows it, this upstream does not: try another route
        await openai.run(make_job([await source()], model="gpt-image-9"))
    assert emu.edit_requests[0].status == 404 and caught.value.retryable


@pytest.mark.parametrize("how", ["hang", "latency"])
async def test_slow_upstream_is_a_timeout(how: str, emu: OpenAIEmulator, source: SourceFactory,
                                          make_job: JobFactory) -> None:
    if how == "hang":
        emu.inject("hang")
    else:
        emu.latency = 2.0
    provider = OpenAIProvider(name="oa", base_url=emu.base_url, api_key=KEY, timeout=0.3)
    try:
        with pytest.raises(UpstreamTimeout) as caught:
            await provider.run(make_job([await source()], model="gpt-image-1"))
    finally:
        await provider.aclose()
    assert caught.value.retryable


async def test_latency_within_the_timeout_is_waited_out(emu: OpenAIEmulator, openai: OpenAIProvider,
                                                        source: SourceFactory, make_job: JobFactory) -> None:
    emu.latency = 0.2
    assert (await openai.run(make_job([await source()], model="gpt-image-1"))).images


@pytest.mark.parametrize("body", [b"<html>oops</html>", b"[]", b'{"data": "x"}', b'{"data": [1, {"url": "u"}]}'])
async def test_unreadable_success_answers_are_retryable(body: bytes, openai: OpenAIProvider, emu: OpenAIEmulator,
                                                        source: SourceFactory, make_job: JobFactory) -> None:
    emu.fail_next(200, body.decode(), content_type="application/json")
    with pytest.raises(UpstreamError) as caught:
        await openai.run(make_job([await source()], model="gpt-image-1"))
    assert caught.value.retryable


def test_every_injectable_kind_is_translated_in_our_own_words() -> None:
    emu = OpenAIEmulator()
    for kind in INJECTABLE:
        if kind in ("hang", "disconnect"):
            continue
        status, body, headers = emu._canned(kind, None)
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        error = translate_error(status, raw, headers, "oa")
        vendor = body["error"]["message"] if isinstance(body, dict) else body
        assert vendor[:40] not in error.message, kind
        assert len(error.message) < 200, kind


def test_vendor_code_and_param_are_bounded() -> None:
    body = b'{"error": {"message": "m", "type": "t", "param": "' + b"p" * 500 + b'", "code": "' + b"c" * 500 + b'"}}'
    error = translate_error(400, body, {}, "oa")
    assert isinstance(error, InvalidRequest) and error.param is None and len(error.message) < 120


@pytest.mark.parametrize(("raw", "expected"), [
    (None, None),
    ({"input_tokens": 50, "output_tokens": 272, "total_tokens": 322},
     TokenUsage(input_tokens=50, output_tokens=272)),
    ({"input_tokens": 50, "output_tokens": 272, "input_tokens_details": {"text_tokens": 10, "image_tokens": 40,
                                                                         "cached_tokens": 5},
      "output_tokens_details": {"image_tokens": 200, "text_tokens": 72}},
     TokenUsage(50, 272, text_in=10, image_in=40, cached_in=5, text_out=72, image_out=200)),
    ({"input_tokens": "50", "output_tokens": 272}, None),
    ({"input_tokens": 50, "output_tokens": True}, None),
    ({"input_tokens": -1, "output_tokens": 272}, None),
    ({"input_tokens": 50, "output_tokens": 10**12}, None),
    ({"input_tokens": 50, "output_tokens": 1.5}, None),
    ({"input_tokens": 50, "output_tokens": 2, "input_tokens_details": "lots"}, None),
    ({"input_tokens": 50, "output_tokens": 2, "input_tokens_details": {"text_tokens": [1]}}, None),
    ("tokens", None),
])
def test_usage_is_parsed_into_checked_counts(raw: object, expected: TokenUsage | None) -> None:
    assert parse_usage(raw) == expected


def test_checked_usage_is_shown_in_openai_shape() -> None:
    usage = TokenUsage(50, 272, text_in=10, image_in=40)
    assert usage.to_json() == {"total_tokens": 322, "input_tokens": 50, "output_tokens": 272,
                               "input_tokens_details": {"text_tokens": 10, "image_tokens": 40}}


async def test_a_variation_is_multipart_without_a_prompt(openai: OpenAIProvider, emu: OpenAIEmulator,
                                                        source: SourceFactory, make_job: JobFactory) -> None:
    result = await openai.run(make_job([await source()], model="dall-e-2", operation="variation", prompt="",
                                       n=2, options={"size": "256x256"}))
    [sent] = emu.variation_requests
    assert sent.fields == {"model": "dall-e-2", "n": "2", "size": "256x256", "response_format": "b64_json"}
    assert [(i.width, i.height) for i in result.images] == [(256, 256)] * 2


async def test_a_stream_yields_checked_events_as_they_come(openai: OpenAIProvider, emu: OpenAIEmulator,
                                                           make_job: JobFactory) -> None:
    job = make_job([], model="gpt-image-1.5", operation="generate", prompt="x",
                   options={"size": "1024x1024", "quality": "low", "partial_images": 3})
    events = [event async for event in openai.stream(job)]
    assert [(e.final, e.index) for e in events] == [(False, 0), (False, 1), (False, 2), (True, 0)]
    assert all((e.image.width, e.image.height) == (1024, 1024) for e in events)
    assert events[-1].usage is not None and events[0].echo["size"] == "1024x1024"


async def test_a_stream_cut_by_the_upstream_is_an_error_not_an_end(openai: OpenAIProvider, emu: OpenAIEmulator,
                                                                   make_job: JobFactory) -> None:
    emu.inject("stream_disconnect", after_events=1, on=OpenAIEmulator.GENERATIONS)
    job = make_job([], model="gpt-image-1.5", operation="generate", prompt="x",
                   options={"size": "1024x1024", "quality": "low", "partial_images": 2})
    seen = []
    with pytest.raises(UpstreamError):
        async for event in openai.stream(job):
            seen.append(event)
    assert len(seen) == 1


class FakeResults:
    """A ResultFetcher that records the URLs it was asked for and answers with one image."""

    def __init__(self, data: bytes) -> None:
        self.data, self.asked = data, []

    async def fetch_result(self, url: str, *, max_bytes: int) -> bytes:
        self.asked.append((url, max_bytes))
        return self.data


async def test_a_url_on_another_host_goes_through_the_safe_fetcher(emu: OpenAIEmulator, make_job: JobFactory) -> None:
    png = image_bytes((32, 32))
    emu.fail_next(200, {"created": 1, "data": [{"url": "https://cdn.example/a.png"}]}, on=OpenAIEmulator.GENERATIONS)
    emu.fail_next(200, {"created": 1, "data": [{"url": "https://cdn.example/b.png"}]}, on=OpenAIEmulator.GENERATIONS)
    job = make_job([], model="dall-e-3", operation="generate", prompt="x")
    results = FakeResults(png)
    provider = OpenAIProvider(name="oa", base_url=emu.base_url, api_key=KEY, timeout=5, results=results)
    bare = OpenAIProvider(name="oa", base_url=emu.base_url, api_key=KEY, timeout=5)
    try:
        assert (await provider.run(job)).images[0].data == png
        assert results.asked == [("https://cdn.example/a.png", job.max_output_bytes)]
        with pytest.raises(UpstreamError, match="another host"):  # nothing to fetch it with: never dialled
            await bare.run(job)
    finally:
        await provider.aclose()
        await bare.aclose()
