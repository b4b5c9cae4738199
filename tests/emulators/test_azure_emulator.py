"""Tests of the Azure OpenAI emulator's generation routes, its streaming and its stream failures, over raw HTTP."""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from PIL import Image

from .azure_emulator import STREAM_INJECTABLE, AzureEmulator

KEY = "azure-key"
VERSION = "2025-04-01-preview"
DEPLOYMENTS = {"gpt-image-1": "gpt-image-1", "mini": "gpt-image-1-mini", "gpt-image-2": "gpt-image-2",
               "d3": "dall-e-3"}


@pytest.fixture
async def emu() -> AsyncIterator[AzureEmulator]:
    async with AzureEmulator(KEY, deployments=DEPLOYMENTS) as e:
        yield e


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def gen_url(emu: AzureEmulator, deployment: str = "gpt-image-1", version: str | None = VERSION) -> str:
    query = "" if version is None else f"?api-version={version}"
    return f"{emu.base_url}/openai/deployments/{deployment}/images/generations{query}"


async def generate(http: aiohttp.ClientSession, emu: AzureEmulator, body: Any, deployment: str = "gpt-image-1",
                   version: str | None = VERSION, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    async with http.post(gen_url(emu, deployment, version), json=body,
                         headers={"api-key": KEY} if headers is None else headers) as r:
        return r.status, r.headers, await r.json(content_type=None)


async def v1_generate(http: aiohttp.ClientSession, emu: AzureEmulator, body: Any) -> tuple[int, Any]:
    async with http.post(f"{emu.v1_base_url}/images/generations", json=body,
                         headers={"Authorization": f"Bearer {KEY}"}) as r:
        return r.status, await r.json(content_type=None)


def png(w: int = 64, h: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 20, 30)).save(buf, "PNG")
    return buf.getvalue()


def edit_form(**fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("image[]", png(), filename="a.png", content_type="image/png")
    form.add_field("prompt", fields.pop("prompt", "add a hat"))
    for name, value in fields.items():
        form.add_field(name, value)
    return form


def decode(b64: str) -> Image.Image:
    im = Image.open(io.BytesIO(base64.b64decode(b64)))
    im.load()
    return im


def error(body: Any, code: str) -> str:
    assert body["error"]["code"] == code, body
    return str(body["error"]["message"])


async def read_sse(resp: aiohttp.ClientResponse) -> list[tuple[float, str, Any]]:
    """(arrival perf_counter, event, decoded data) per SSE frame, until EOF; every frame is exactly one
    ``event:`` line and one ``data:`` line."""
    frames: list[tuple[float, str, Any]] = []
    while chunk := await resp.content.readuntil(b"\n\n"):
        arrived = time.perf_counter()
        lines = chunk.decode().strip("\n").split("\n")
        fields = dict(line.split(": ", 1) for line in lines)
        assert len(lines) == 2 and set(fields) == {"event", "data"}, chunk
        frames.append((arrived, fields["event"], json.loads(fields["data"])))
    return frames


async def eventually(predicate: Any, within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


# ------------------------------------------------------------------------------------ GPT image generations


async def test_gpt_image_generation_answers_base64_and_usage(http: aiohttp.ClientSession,
                                                             emu: AzureEmulator) -> None:
    status, headers, body = await generate(http, emu, {"prompt": "an otter", "size": "1536x1024", "n": 2,
                                                       "quality": "low", "output_format": "jpeg",
                                                       "output_compression": 80, "user": "u1",
                                                       "safety_identifier": "s1", "moderation": "low"})
    assert status == 200, body
    assert set(body) == {"created", "data", "usage"}
    assert [set(item) for item in body["data"]] == [{"b64_json"}, {"b64_json"}]
    im = decode(body["data"][0]["b64_json"])
    assert im.format == "JPEG" and im.size == (1536, 1024)
    usage = body["usage"]
    assert usage["output_tokens"] == 2 * (272 * 1536 * 1024 // (1024 * 1024))
    assert usage["input_tokens_details"] == {"text_tokens": len("an otter") // 4 + 1, "image_tokens": 0}
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert headers["apim-request-id"] == emu.generation_requests[-1].request_id
    assert headers["x-ms-region"] == "swedencentral"
    assert emu.generation_requests[-1].json["prompt"] == "an otter" and not emu.edit_requests


async def test_generation_defaults_follow_the_family(http: aiohttp.ClientSession, emu: AzureEmulator) -> None:
    _, _, high = await generate(http, emu, {"prompt": "x"})
    _, _, medium = await generate(http, emu, {"prompt": "x"}, deployment="mini")
    assert decode(high["data"][0]["b64_json"]).size == (1024, 1024)
    assert decode(high["data"][0]["b64_json"]).format == "PNG"
    assert high["usage"]["output_tokens"] == 4160 and medium["usage"]["output_tokens"] == 1056


async def test_transparent_background_gives_an_alpha_png(http: aiohttp.ClientSession, emu: AzureEmulator) -> None:
    status, _, body = await generate(http, emu, {"prompt": "a logo", "background": "transparent"})
    assert status == 200
    im = decode(body["data"][0]["b64_json"])
    assert im.mode == "RGBA" and im.getpixel((0, 0))[3] == 0 and im.getpixel((512, 512))[3] == 255
    status, _, body = await generate(http, emu, {"prompt": "a logo", "background": "transparent",
                                                 "output_format": "jpeg"})
    assert status == 400 and body["error"]["param"] == "background"


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"prompt": "x", "response_format": "b64_json"}, "response_format", "unknown_parameter"),
    ({"prompt": "x", "style": "vivid"}, "style", "unknown_parameter"),
    ({"prompt": "x", "input_fidelity": "high"}, "input_fidelity", "unknown_parameter"),
    ({"prompt": "x", "output_format": "webp"}, "output_format", "invalid_value"),
    ({"prompt": "x", "quality": "hd"}, "quality", "invalid_value"),
    ({"prompt": "x", "size": "1792x1024"}, "size", "invalid_value"),
    ({"prompt": "x", "size": "1536x864"}, "size", "invalid_value"),
    ({"prompt": "x", "background": "clear"}, "background", "invalid_value"),
    ({"prompt": "x", "moderation": "high"}, "moderation", "invalid_value"),
    ({"prompt": "x", "n": 0}, "n", "integer_below_min_value"),
    ({"prompt": "x", "n": 11}, "n", "integer_above_max_value"),
    ({"prompt": "x", "n": "2"}, "n", "invalid_type"),
    ({"prompt": "x", "n": True}, "n", "invalid_type"),
    ({"prompt": "x", "output_compression": 101}, "output_compression", "integer_above_max_value"),
    ({"prompt": "x", "partial_images": 4}, "partial_images", "integer_above_max_value"),
    ({"prompt": "x", "stream": "true"}, "stream", "invalid_type"),
    ({"prompt": "x", "user": 5}, "user", "invalid_type"),
    ({"prompt": "x", "safety_identifier": ["a"]}, "safety_identifier", "invalid_type"),
    ({"size": "1024x1024"}, "prompt", "missing_required_parameter"),
    ({"prompt": ""}, "prompt", "empty_string"),
    ({"prompt": 3}, "prompt", "invalid_type"),
    ({"prompt": "x" * 32001}, "prompt", "string_above_max_length"),
])
async def test_gpt_image_generation_refuses_what_azure_refuses(http: aiohttp.ClientSession, emu: AzureEmulator,
                                                               body: dict[str, Any], param: str, code: str) -> None:
    status, _, answer = await generate(http, emu, body)
    assert status == 400, answer
    assert answer["error"]["param"] == param and answer["error"]["code"] == code, answer
    assert answer["error"]["type"] == "invalid_request_error"


async def test_explicit_nulls_count_as_absent(http: aiohttp.ClientSession, emu: AzureEmulator) -> None:
    status, _, body = await generate(http, emu, {"prompt": "x", "n": None, "size": None, "quality": None})
    assert status == 200 and len(body["data"]) == 1


async def test_gpt_image_2_takes_custom_sizes_unless_told_not_to(http: aiohttp.ClientSession,
                                                                 emu: AzureEmulator) -> None:
    status, _, body = await generate(http, emu, {"prompt": "x", "size": "1536x864"}, deployment="gpt-image-2")
    assert status == 200 and decode(body["data"][0]["b64_json"]).size == (1536, 864)
    for bad in ("1000x1000", "3840x640", "4096x2304", "512x512", "big"):
        status, _, body = await generate(http, emu, {"prompt": "x", "size": bad}, deployment="gpt-image-2")
        assert status == 400 and body["error"]["param"] == "size", bad
    emu.custom_sizes = False
    status, _, body = await generate(http, emu, {"prompt": "x", "size": "1536x864"}, deployment="gpt-image-2")
    assert status == 400 and body["error"]["code"] == "invalid_value"


async def test_moderation_can_be_refused(http: aiohttp.ClientSession) -> None:
    async with AzureEmulator(KEY, accept_moderation=False) as emu:
        status, _, body = await generate(http, emu, {"prompt": "x", "moderation": "low"})
    assert status == 400 and body["error"]["code"] == "unknown_parameter"


async def test_v1_generation_names_the_deployment_in_the_body(http: aiohttp.ClientSession,
                                                              emu: AzureEmulator) -> None:
    status, body = await v1_generate(http, emu, {"model": "mini", "prompt": "x"})
    assert status == 200 and body["usage"]["output_tokens"] == 1056
    assert emu.generation_requests[-1].path == "/openai/v1/images/generations"
    status, body = await v1_generate(http, emu, {"prompt": "x"})
    assert status == 400 and body["error"]["code"] == "missing_required_parameter"
    status, body = await v1_generate(http, emu, ["mini"])
    assert status == 400 and body["error"]["code"] == "invalid_type"
    status, body = await v1_generate(http, emu, {"model": "nope", "prompt": "x"})
    assert status == 404 and error(body, "DeploymentNotFound")
    async with http.post(f"{emu.v1_base_url}/images/generations?api-version=2024-10-21", json={"model": "mini"},
                         headers={"api-key": KEY}) as r:
        assert r.status == 400


async def test_v1_unknown_model_can_be_a_400(http: aiohttp.ClientSession) -> None:
    async with AzureEmulator(KEY, v1_unknown_model="model_not_found") as emu:
        status, body = await v1_generate(http, emu, {"model": "gpt-image-2-1", "prompt": "x"})
    assert status == 400
    assert body["error"]["message"] == "The model 'gpt-image-2-1' does not exist."
    assert body["error"]["type"] == "image_generation_user_error" and body["error"]["param"] == "model"


async def test_routing_auth_and_api_versions(http: aiohttp.ClientSession, emu: AzureEmulator) -> None:
    status, _, body = await generate(http, emu, {"prompt": "x"}, version=None)
    assert status == 404 and error(body, "404") == "Resource not found"
    status, _, body = await generate(http, emu, {"prompt": "x"}, version="2023-07-01-preview")
    assert status == 404
    status, _, body = await generate(http, emu, {"prompt": "x"}, version="2024-10-21")  # before gpt-image-1
    assert status == 400 and "imageGeneration operation does not work" in error(body, "OperationNotSupported")
    status, _, body = await generate(http, emu, {"prompt": "x"}, deployment="gone")
    assert status == 404 and error(body, "DeploymentNotFound")
    status, _, body = await generate(http, emu, {"prompt": "x"}, headers={})
    assert status == 401 and "missing subscription key" in error(body, "401")
    status, _, body = await generate(http, emu, {"prompt": "x"}, headers={"Authorization": f"Bearer {KEY}"})
    assert status == 401  # the classic path takes the key as api-key only
    status, _, body = await generate(http, emu, {"prompt": "x"}, headers={"api-key": "wrong"})
    assert status == 401 and "invalid subscription key" in error(body, "401")


async def test_bodies_must_be_json_objects(http: aiohttp.ClientSession, emu: AzureEmulator) -> None:
    async with http.post(gen_url(emu), data={"prompt": "x"}, headers={"api-key": KEY}) as r:
        body = await r.json()
        assert r.status == 400 and "expected application/json" in body["error"]["message"]
    async with http.post(gen_url(emu), data=b"{nope", headers={"api-key": KEY,
                                                               "Content-Type": "application/json"}) as r:
        body = await r.json()
        assert r.status == 400 and "could not parse the JSON body" in body["error"]["message"]
    status, _, body = await generate(http, emu, ["prompt"])
    assert status == 400 and body["error"]["code"] == "invalid_type"


async def test_variations_are_not_an_azure_operation(http: aiohttp.ClientSession, emu: AzureEmulator) -> None:
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("image", png(), filename="a.png", content_type="image/png")
    for url in (f"{emu.base_url}/openai/deployments/d3/images/variations?api-version={VERSION}",
                f"{emu.v1_base_url}/images/variations"):
        async with http.post(url, data=form, headers={"api-key": KEY}) as r:
            assert r.status == 404
            assert await r.json() == {"error": {"code": "404", "message": "Resource not found"}}


# ------------------------------------------------------------------------------------------------ dall-e-3


async def test_dalle3_answers_a_url_served_on_loopback(http: aiohttp.ClientSession, emu: AzureEmulator) -> None:
    status, _, body = await generate(http, emu, {"prompt": "a red fox.", "style": "natural"}, deployment="d3",
                                     version="2024-02-01")
    assert status == 200, body
    assert set(body) == {"created", "data"}  # no usage for DALL·E
    [item] = body["data"]
    assert set(item) == {"url", "revised_prompt", "prompt_filter_results", "content_filter_results"}
    assert item["revised_prompt"].startswith("a red fox. The scene is rendered in a natural")
    assert item["prompt_filter_results"]["profanity"] == {"detected": False, "filtered": False}
    assert item["content_filter_results"]["violence"] == {"filtered": False, "severity": "safe"}
    assert item["url"].startswith(emu.url + "/private/images/") and "sig=" in item["url"]
    async with http.get(item["url"]) as r:
        assert r.status == 200 and r.content_type == "image/png"
        im = Image.open(io.BytesIO(await r.read()))
        assert im.size == (1024, 1024)
    assert len(emu.downloads) == 1
    emu.expire_urls()
    async with http.get(item["url"]) as r:
        assert r.status == 403 and "AuthenticationFailed" in await r.text()
    async with http.get(emu.url + "/private/images/0/generated_00.png") as r:
        assert r.status == 404 and "BlobNotFound" in await r.text()


async def test_dalle3_b64_json_and_sizes(http: aiohttp.ClientSession, emu: AzureEmulator) -> None:
    status, _, body = await generate(http, emu, {"prompt": "x", "response_format": "b64_json", "size": "1792x1024",
                                                 "quality": "hd", "n": 1, "user": "u"}, deployment="d3")
    assert status == 200 and set(body["data"][0]) == {"b64_json", "revised_prompt", "prompt_filter_results",
                                                      "content_filter_results"}
    assert decode(body["data"][0]["b64_json"]).size == (1792, 1024)


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"prompt": "x", "n": 2}, 400, "invalidPayload"),
    ({"prompt": "x", "quality": "high"}, 400, "invalidPayload"),
    ({"prompt": "x", "quality": ""}, 400, "invalidPayload"),
    ({"prompt": "x", "size": "1536x1024"}, 400, "invalidPayload"),
    ({"prompt": "x", "style": "bold"}, 400, "invalidPayload"),
    ({"prompt": "x", "response_format": "png"}, 400, "invalidPayload"),
    ({"prompt": "x", "stream": True}, 400, "unknown_parameter"),
    ({"prompt": "x", "background": "opaque"}, 400, "unknown_parameter"),
    ({"prompt": "x", "output_format": "png"}, 400, "unknown_parameter"),
    ({"prompt": "x" * 4001}, 400, "string_above_max_length"),
])
async def test_dalle3_rules(http: aiohttp.ClientSession, emu: AzureEmulator, body: dict[str, Any], status: int,
                           code: str) -> None:
    got, _, answer = await generate(http, emu, body, deployment="d3")
    assert got == status and answer["error"]["code"] == code, answer
    if code == "invalidPayload":
        assert answer["error"]["message"].startswith("Invalid payload: Value for property ")


async def test_dalle3_deployments_cannot_edit(http: aiohttp.ClientSession, emu: AzureEmulator) -> None:
    url = f"{emu.base_url}/openai/deployments/d3/images/edits?api-version={VERSION}"
    async with http.post(url, data=edit_form(), headers={"api-key": KEY}) as r:
        body = await r.json()
    assert r.status == 400 and "imageEdit operation does not work" in error(body, "OperationNotSupported")


# ------------------------------------------------------------------------------------------------ failures


async def test_failures_aim_at_one_route(http: aiohttp.ClientSession, emu: AzureEmulator) -> None:
    emu.inject("rate_limit", on="generation", retry_after=7)
    emu.inject("rate_limit")  # the edit route
    status, headers, body = await generate(http, emu, {"prompt": "x"})
    assert status == 429 and headers["retry-after"] == "7"
    assert "Requests to the Images_Generations Operation" in error(body, "429")
    url = f"{emu.base_url}/openai/deployments/gpt-image-1/images/edits?api-version={VERSION}"
    async with http.post(url, data=edit_form(), headers={"api-key": KEY}) as r:
        assert r.status == 429 and "Requests to the Images_Edit Operation" in (await r.json())["error"]["message"]
    assert emu.pending_failures == 0
    emu.inject("content_filter", on=None)
    status, _, body = await generate(http, emu, {"prompt": "x"}, deployment="d3")
    assert status == 400 and error(body, "contentFilter") == "Your task failed as a result of our safety system."
    emu.fail_next(500, {"error": {"code": "InternalServerError", "message": "boom {request_id}"}}, on="generation")
    status, _, body = await generate(http, emu, {"prompt": "x"})
    assert status == 500 and body["error"]["message"] == f"boom {emu.generation_requests[-1].request_id}"


async def test_latency_delays_generations(http: aiohttp.ClientSession, emu: AzureEmulator) -> None:
    emu.latency = 0.3
    started = time.perf_counter()
    status, _, _ = await generate(http, emu, {"prompt": "x"})
    assert status == 200 and time.perf_counter() - started >= 0.3


# ------------------------------------------------------------------------------------------------ streaming


async def test_generation_stream_events(http: aiohttp.ClientSession, emu: AzureEmulator) -> None:
    body = {"prompt": "an otter", "stream": True, "partial_images": 2, "size": "1024x1536", "quality": "medium",
            "output_format": "jpeg"}
    async with http.post(gen_url(emu), json=body, headers={"api-key": KEY}) as r:
        assert r.status == 200 and r.content_type == "text/event-stream"
        assert r.headers["apim-request-id"] == emu.generation_requests[-1].request_id
        frames = await read_sse(r)
    names = [name for _, name, _ in frames]
    assert names == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    for i, (_, name, data) in enumerate(frames):
        assert data["type"] == name
        assert data["size"] == "1024x1536" and data["quality"] == "medium"
        assert data["background"] == "opaque" and data["output_format"] == "jpeg"
        assert isinstance(data["created_at"], int)
        assert decode(data["b64_json"]).size == (1024, 1536)
        if i < 2:
            assert data["partial_image_index"] == i and "usage" not in data
    usage = frames[-1][2]["usage"]
    assert set(usage) == {"input_tokens", "output_tokens", "total_tokens", "input_tokens_details"}
    assert usage["output_tokens"] == 1056 * 1024 * 1536 // (1024 * 1024)
    record = emu.last_stream
    assert record is not None and record is emu.stream_for(emu.generation_requests[-1])
    assert record.operation == "generation" and record.model == "gpt-image-1" and record.completed
    assert record.event_types == names == record.planned
    assert all(e.written_at >= record.started_at for e in record.events if record.started_at is not None)
    assert record.write_times == sorted(record.write_times) and record.injected is None
    assert not record.client_disconnected and not emu.client_disconnects


async def test_edit_stream_events(http: aiohttp.ClientSession, emu: AzureEmulator) -> None:
    url = f"{emu.v1_base_url}/images/edits"
    async with http.post(url, data=edit_form(model="gpt-image-1", stream="true", partial_images="1"),
                         headers={"api-key": KEY}) as r:
        assert r.status == 200
        frames = await read_sse(r)
    assert [name for _, name, _ in frames] == ["image_edit.partial_image", "image_edit.completed"]
    assert frames[1][2]["usage"]["input_tokens_details"]["image_tokens"] == 323
    assert emu.last_stream is not None and emu.last_stream.operation == "edit"
    url = f"{emu.base_url}/openai/deployments/gpt-image-1/images/edits?api-version={VERSION}"
    async with http.post(url, data=edit_form(stream="false"), headers={"api-key": KEY}) as r:
        assert r.status == 200 and r.content_type == "application/json"
    async with http.post(url, data=edit_form(stream="yes"), headers={"api-key": KEY}) as r:
        assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_type"


async def test_no_partials_means_one_event(http: aiohttp.ClientSession, emu: AzureEmulator) -> None:
    async with http.post(gen_url(emu), json={"prompt": "x", "stream": True, "partial_images": 0},
                         headers={"api-key": KEY}) as r:
        frames = await read_sse(r)
    assert [name for _, name, _ in frames] == ["image_generation.completed"]


async def test_stream_interval_spaces_events(http: aiohttp.ClientSession) -> None:
    async with AzureEmulator(KEY, stream_interval=0.15, latency=0.1) as emu:
        started = time.perf_counter()
        async with http.post(gen_url(emu), json={"prompt": "x", "stream": True, "partial_images": 3},
                             headers={"api-key": KEY}) as r:
            assert time.perf_counter() - started >= 0.1  # latency before the headers
            frames = await read_sse(r)
        record = emu.last_stream
    assert record is not None and len(record.events) == 4
    assert all(gap >= 0.14 for gap in record.gaps), record.gaps
    arrivals = [t for t, _, _ in frames]
    assert all(b - a >= 0.05 for a, b in itertools.pairwise(arrivals)), arrivals


async def test_stream_gate_holds_each_event(http: aiohttp.ClientSession) -> None:
    async with AzureEmulator(KEY, stream_gate=True) as emu:
        async with http.post(gen_url(emu), json={"prompt": "x", "stream": True, "partial_images": 1},
                             headers={"api-key": KEY}) as r:
            await asyncio.sleep(0.1)
            record = emu.last_stream
            assert record is not None and record.events == []
            emu.release_stream_events()
            first = await r.content.readuntil(b"\n\n")
            assert b"image_generation.partial_image" in first
            await asyncio.sleep(0.1)
            assert len(record.events) == 1
            emu.release_stream_events()
            rest = await read_sse(r)
    assert [name for _, name, _ in rest] == ["image_generation.completed"] and record.completed


async def test_stream_error_frame_after_k_events(http: aiohttp.ClientSession, emu: AzureEmulator) -> None:
    emu.inject("stream_error", after_events=1, on="generation")
    async with http.post(gen_url(emu), json={"prompt": "x", "stream": True, "partial_images": 2},
                         headers={"api-key": KEY}) as r:
        assert r.status == 200
        frames = await read_sse(r)
    assert [name for _, name, _ in frames] == ["image_generation.partial_image", "error"]
    assert frames[1][2] == {"type": "error", "error": {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error", "param": None, "code": "server_error"}}
    record = emu.last_stream
    assert record is not None and record.injected == "error" and not record.completed
    assert record.event_types == ["image_generation.partial_image", "error"]
    assert emu.pending_failures == 0


async def test_custom_stream_error_after_the_completed_event(http: aiohttp.ClientSession,
                                                            emu: AzureEmulator) -> None:
    emu.fail_stream(99, message="content filtered", code="content_filter", error_type="invalid_request_error")
    async with http.post(f"{emu.v1_base_url}/images/edits", data=edit_form(model="gpt-image-1", stream="true"),
                         headers={"api-key": KEY}) as r:
        frames = await read_sse(r)
    assert [name for _, name, _ in frames] == ["image_edit.completed", "error"]
    assert frames[1][2]["error"]["code"] == "content_filter"
    with pytest.raises(ValueError, match="action"):
        emu.fail_stream(action="explode")


async def test_stream_failures_wait_for_a_streaming_request(http: aiohttp.ClientSession,
                                                            emu: AzureEmulator) -> None:
    emu.inject("stream_error", on="generation")
    status, _, _ = await generate(http, emu, {"prompt": "x"})
    assert status == 200 and emu.pending_failures == 1
    async with http.post(gen_url(emu), json={"prompt": "x", "stream": True}, headers={"api-key": KEY}) as r:
        frames = await read_sse(r)
    assert [name for _, name, _ in frames] == ["error"] and emu.pending_failures == 0
    assert set(STREAM_INJECTABLE) == {"stream_error", "stream_disconnect", "stream_hang"}


async def test_stream_disconnect_after_k_events(http: aiohttp.ClientSession, emu: AzureEmulator) -> None:
    emu.inject("stream_disconnect", after_events=2, on=None)
    got: list[bytes] = []
    async with http.post(gen_url(emu), json={"prompt": "x", "stream": True, "partial_images": 3},
                         headers={"api-key": KEY}) as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            while chunk := await r.content.readuntil(b"\n\n"):
                got.append(chunk)
    assert len(got) == 2
    record = emu.last_stream
    assert record is not None and record.injected == "disconnect" and len(record.events) == 2
    assert not record.completed


async def test_stream_hang_goes_silent(http: aiohttp.ClientSession, emu: AzureEmulator) -> None:
    emu.inject("stream_hang", after_events=1, on="generation")
    async with http.post(gen_url(emu), json={"prompt": "x", "stream": True, "partial_images": 1},
                         headers={"api-key": KEY}) as r:
        await r.content.readuntil(b"\n\n")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(r.content.readuntil(b"\n\n"), 0.3)
    record = emu.last_stream
    assert record is not None and record.injected == "hang" and len(record.events) == 1
    await eventually(lambda: record.client_disconnected)


async def test_client_leaving_mid_stream_is_recorded(http: aiohttp.ClientSession) -> None:
    async with AzureEmulator(KEY, stream_interval=0.2) as emu:
        async with http.post(gen_url(emu), json={"prompt": "x", "stream": True, "partial_images": 3},
                             headers={"api-key": KEY}) as r:
            await r.content.readuntil(b"\n\n")
            left = time.perf_counter()
            r.close()
        record = emu.last_stream
        assert record is not None
        await eventually(lambda: record.client_disconnected)
        assert record.disconnected_at is not None and record.disconnected_at >= left
        assert record.disconnected_at - left < 0.5  # noticed within a poll, not at the next write
        assert len(record.events) < len(record.planned) and not record.completed
        assert emu.client_disconnects == [record.request]


async def test_hang_and_streams(http: aiohttp.ClientSession) -> None:
    async with AzureEmulator(KEY, hang=True) as emu:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await generate(http, emu, {"prompt": "x", "stream": True})
        assert emu.generation_requests[-1].status is None and emu.streams == []
